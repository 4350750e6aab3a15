"""An administrator's suspension of a tenant, and keys that stop working within seconds.

``active`` is the tenant's own switch; ``POST /tenant/{id}/suspend`` is the administrator's: the tenant's
token is refused with 403 and a clear reason, its messages wait, and only an administrator lifts it. A
replaced or revoked key is refused (401) by the api function itself, even while API Gateway still holds
the authorizer's cached answer for that token.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from local.gateway import HttpApiGateway
from local.template import load_template
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb.keys import TENANT_SK, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.security.tokens import hash_token
from mail_proxy.usecases.authorization import KEY_CHECK_CACHE_SECONDS
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer

SUSPENDED = "tenant suspended by an administrator"


@pytest.fixture
def cached_api(stack: Stack) -> ApiClient:
    """The in-process API with the authorizer's answers cached per token, as AuthorizerCacheSeconds does."""
    client = ApiClient()
    client.gateway = HttpApiGateway(api=client.api.lambda_handler, authorizer=client.authorizer.lambda_handler,
                                    routes=load_template().http_routes("ApiFunction"), auth_cache_seconds=3600)
    return client


@pytest.fixture
def delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("PUBLIC_API_URL", "http://api.test")
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def suspend(api: ApiClient, tenant_id: str, **body: str) -> None:
    resp = api.post(f"/tenant/{tenant_id}/suspend", token=ADMIN_TOKEN, body=body or None)
    assert resp.status == 200, resp.text


# ------------------------------------------------------------------------------------ suspension


def test_a_suspended_tenants_token_gets_403_with_the_reason_on_every_route(api: ApiClient) -> None:
    token = api.create_tenant("acme")
    suspend(api, "acme", reason="unpaid invoice")
    for method, path in (("GET", "/status"), ("GET", "/messages"), ("GET", "/tenant/acme"),
                         ("POST", "/commands/run-now"), ("GET", "/accounts")):
        resp = api.request(method, path, token=token)
        assert resp.status == 403, (path, resp.text)
        assert resp.json == {"detail": SUSPENDED}


def test_a_suspended_tenant_cannot_reactivate_itself(api: ApiClient) -> None:
    token = api.create_tenant("acme")
    suspend(api, "acme")
    assert api.put("/tenant/acme", token=token, body={"active": True}).status == 403
    assert api.post("/tenant/acme/resume", token=token).status == 403
    assert api.get("/tenant/acme", token=ADMIN_TOKEN).json["admin_suspended"] is True


def test_only_the_admin_may_suspend_or_resume(api: ApiClient) -> None:
    token = api.create_tenant("acme")
    api.create_tenant("rival")
    for path in ("/tenant/acme/suspend", "/tenant/acme/resume", "/tenant/rival/suspend"):
        assert api.post(path, token=token).status == 403, path
    assert api.get("/tenant/acme", token=ADMIN_TOKEN).json["admin_suspended"] is False
    assert api.get("/tenant/rival", token=ADMIN_TOKEN).json["admin_suspended"] is False


def test_the_tenant_field_admin_suspended_cannot_be_set_by_an_update(api: ApiClient) -> None:
    token = api.create_tenant("acme")
    suspend(api, "acme")
    assert api.put("/tenant/acme", token=ADMIN_TOKEN, body={"admin_suspended": False}).status == 422
    resp = api.post("/tenant/acme/resume", token=ADMIN_TOKEN)
    assert resp.status == 200, resp.text
    assert api.put("/tenant/acme", token=token, body={"admin_suspended": True}).status == 422


def test_suspension_and_its_reason_are_shown_to_the_admin(api: ApiClient) -> None:
    api.create_tenant("acme")
    suspend(api, "acme", reason="abuse report #12")
    tenant = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert tenant["admin_suspended"] is True and tenant["admin_suspended_reason"] == "abuse report #12"
    assert tenant["active"] is True  # the tenant's own switch is untouched
    [status] = api.get("/status?tenant_id=acme", token=ADMIN_TOKEN).json["tenants"]
    assert status["admin_suspended"] is True
    listed = api.get("/tenants", token=ADMIN_TOKEN).json["tenants"]
    assert [t["admin_suspended"] for t in listed] == [True]


def test_resume_gives_the_token_back_and_clears_the_reason(api: ApiClient) -> None:
    token = api.create_tenant("acme")
    suspend(api, "acme", reason="check")
    assert api.post("/tenant/acme/resume", token=ADMIN_TOKEN).status == 200
    assert api.get("/status", token=token).status == 200
    tenant = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert tenant["admin_suspended"] is False and tenant["admin_suspended_reason"] is None


def test_suspending_an_unknown_tenant_is_404(api: ApiClient) -> None:
    assert api.post("/tenant/ghost/suspend", token=ADMIN_TOKEN).status == 404
    assert api.post("/tenant/ghost/resume", token=ADMIN_TOKEN).status == 404


def test_a_suspension_reaches_a_cached_authorizer_answer_within_seconds(cached_api: ApiClient,
                                                                        stack: Stack) -> None:
    token = cached_api.create_tenant("acme")
    assert cached_api.get("/status", token=token).status == 200  # the gateway now caches "acme"
    # suspended through another container: this one learns it once its short cache has expired
    MailRepository(stack.table_name).update_tenant("acme", {"admin_suspended": True})
    clock.advance(KEY_CHECK_CACHE_SECONDS + 1)
    resp = cached_api.get("/status", token=token)
    assert resp.status == 403 and resp.json == {"detail": SUSPENDED}


def test_tenant_is_sending_is_false_while_an_admin_suspension_holds() -> None:
    assert Tenant("acme", active=True).is_sending(None) is True
    assert Tenant("acme", active=True, admin_suspended=True).is_sending(None) is False
    assert Tenant("acme", active=True, admin_suspended=True).is_sending("b1") is False


def test_a_suspended_tenants_messages_wait_and_go_after_resume(api: ApiClient, delivery: DeliveryHarness,
                                                               smtp: ScriptedSmtpServer) -> None:
    token = api.create_tenant("acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("w1"), message("w2", deferred_ts=clock.now_ts() + 60)]})
    assert resp.status == 200 and resp.json["queued"] == 2, resp.text
    suspend(api, "acme")  # after w1 was queued: the sender must hold it too
    delivery.drain()
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    assert smtp.messages == []
    states = {m["id"]: m["status"] for m in api.get("/messages?tenant_id=acme", token=ADMIN_TOKEN).json["messages"]}
    assert states["w1"] in ("pending", "deferred") and states["w2"] in ("pending", "deferred")
    assert api.post("/tenant/acme/resume", token=ADMIN_TOKEN).status == 200
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    assert len(smtp.messages) == 2


# ------------------------------------------------------------------------------- keys: replace, revoke


def test_a_revoked_key_is_refused_at_once_though_the_gateway_cached_it(cached_api: ApiClient) -> None:
    token = cached_api.create_tenant("acme")
    assert cached_api.get("/status", token=token).status == 200
    assert cached_api.delete("/tenant/acme/api-key", token=ADMIN_TOKEN).status == 200
    resp = cached_api.get("/status", token=token)
    assert resp.status == 401 and resp.json == {"detail": "Invalid or missing API token"}


def test_a_replaced_key_is_refused_and_the_new_one_works(cached_api: ApiClient) -> None:
    old = cached_api.create_tenant("acme")
    assert cached_api.get("/messages", token=old).status == 200
    new = cached_api.post("/tenant/acme/api-key", token=ADMIN_TOKEN).json["api_key"]
    assert cached_api.get("/messages", token=old).status == 401
    assert cached_api.get("/messages", token=new).status == 200


def test_a_key_revoked_by_another_container_stops_working_within_seconds(cached_api: ApiClient,
                                                                         stack: Stack) -> None:
    token = cached_api.create_tenant("acme")
    assert cached_api.get("/status", token=token).status == 200
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key=item_key(tenant_pk("acme"), TENANT_SK),
        UpdateExpression="SET token_hash = :h", ExpressionAttributeValues={":h": {"S": hash_token("another")}})
    clock.advance(KEY_CHECK_CACHE_SECONDS + 1)
    assert cached_api.get("/status", token=token).status == 401


def test_a_deleted_tenants_cached_token_is_refused(cached_api: ApiClient) -> None:
    token = cached_api.create_tenant("acme")
    assert cached_api.get("/status", token=token).status == 200
    assert cached_api.delete("/tenant/acme", token=ADMIN_TOKEN).status == 200
    assert cached_api.get("/status", token=token).status == 401
