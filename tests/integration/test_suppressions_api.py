"""GET/POST/DELETE /suppressions: the tenant's suppression list, tenant-scoped like every tenant route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mail_proxy.adapters.dynamodb.keys import SUPPRESSION_PREFIX, tenant_pk
from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.bounce_poller import record, submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer


@pytest.fixture
def tokens(api: ApiClient) -> dict[str, str]:
    return {tenant: api.create_tenant(tenant) for tenant in ("acme", "globex")}


def addresses(api: ApiClient, token: str, **query: str) -> list[str]:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    resp = api.get("/suppressions" + suffix, token=token)
    assert resp.status == 200, resp.text
    return [entry["address"] for entry in resp.json["suppressions"]]


def test_a_tenant_adds_lists_and_removes_its_entries(api: ApiClient, tokens: dict[str, str]) -> None:
    acme = tokens["acme"]
    created = api.post("/suppressions", token=acme, body={"address": "Someone@Example.org", "reason": "asked us"})
    assert created.status == 201 and created.json == {"ok": True}
    assert api.post("/suppressions", token=acme, body={"address": "other@example.org"}).status == 201
    [first, second] = api.get("/suppressions", token=acme).json["suppressions"]
    assert (first["address"], first["reason"], first["source"]) == ("other@example.org", None, "manual")
    assert second["address"] == "Someone@Example.org" and second["reason"] == "asked us"
    year = 365 * 24 * 3600
    assert abs(second["expires_ts"] - (clock.now_ts() + year)) < 60
    assert api.delete("/suppressions/someone@example.org", token=acme).json == {"ok": True}
    assert addresses(api, acme) == ["other@example.org"]
    assert api.delete("/suppressions/someone@example.org", token=acme).status == 404


def test_suppressions_are_isolated_between_tenants(api: ApiClient, tokens: dict[str, str]) -> None:
    acme, globex = tokens["acme"], tokens["globex"]
    assert api.post("/suppressions", token=acme, body={"address": "x@example.org"}).status == 201
    assert addresses(api, globex) == []
    assert api.get("/suppressions?tenant_id=acme", token=globex).status == 403
    assert api.post("/suppressions", token=globex, body={"address": "y@example.org", "tenant_id": "acme"}).status \
        == 403
    assert api.post("/suppressions?tenant_id=acme", token=globex, body={"address": "y@example.org"}).status == 403
    assert api.delete("/suppressions/x@example.org?tenant_id=acme", token=globex).status == 403
    assert api.delete("/suppressions/x@example.org", token=globex).status == 404
    assert addresses(api, acme) == ["x@example.org"]


def test_the_admin_token_must_name_the_tenant(api: ApiClient, tokens: dict[str, str]) -> None:
    assert api.get("/suppressions", token=ADMIN_TOKEN).status == 422
    assert api.post("/suppressions", token=ADMIN_TOKEN, body={"address": "a@example.org"}).status == 422
    assert api.post("/suppressions", token=ADMIN_TOKEN,
                    body={"address": "a@example.org", "tenant_id": "globex"}).status == 201
    assert addresses(api, ADMIN_TOKEN, tenant_id="globex") == ["a@example.org"]
    assert api.post("/suppressions", token=ADMIN_TOKEN,
                    body={"address": "a@example.org", "tenant_id": "nobody"}).status == 404
    assert api.get("/suppressions").status == 401


@pytest.mark.parametrize("body", [
    {"address": "not-an-address"},
    {"address": "a@example.org", "reason": "line\nbreak"},
    {"address": "a@example.org", "expires_ts": 1},
    {"address": "a@example.org", "unknown": True},
])
def test_invalid_entries_are_refused(api: ApiClient, tokens: dict[str, str], body: dict[str, object]) -> None:
    assert api.post("/suppressions", token=tokens["acme"], body=body).status == 422


@pytest.mark.parametrize("address", ['"jo smith"@example.org', "jo@[127.0.0.1]", "jo@localhost"])
def test_an_address_outside_the_grammar_is_refused_with_a_422_naming_it(
        api: ApiClient, tokens: dict[str, str], address: str) -> None:
    resp = api.post("/suppressions", token=tokens["acme"], body={"address": address})
    assert resp.status == 422, resp.text
    [detail] = resp.json["detail"]
    assert detail["loc"] == ["address"] and detail["msg"] == f"address: {address!r} is not a valid e-mail address"


def test_listing_pages_with_a_cursor(api: ApiClient, tokens: dict[str, str]) -> None:
    acme = tokens["acme"]
    for i in range(5):
        assert api.post("/suppressions", token=acme, body={"address": f"a{i}@example.org"}).status == 201
    page = api.get("/suppressions?limit=2", token=acme).json
    seen = [e["address"] for e in page["suppressions"]]
    while page["next_cursor"]:
        page = api.get(f"/suppressions?limit=2&cursor={page['next_cursor']}", token=acme).json
        seen += [e["address"] for e in page["suppressions"]]
    assert seen == [f"a{i}@example.org" for i in range(5)]


@pytest.fixture
def delivery(stack: Stack) -> Iterator[DeliveryHarness]:
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def test_a_manual_entry_blocks_sending_until_it_expires(
        api: ApiClient, tokens: dict[str, str], delivery: DeliveryHarness) -> None:
    acme = tokens["acme"]
    with ScriptedSmtpServer() as smtp:
        api.create_account(acme, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
        expires = clock.now_ts() + 3600
        body = {"address": "later@example.org", "expires_ts": expires}
        assert api.post("/suppressions", token=acme, body=body).status == 201
        submit(api, acme, message("m1", to=["later@example.org"]))
        delivery.drain()
        rec = record(api, acme, "m1")
        assert (rec["status"], rec["error"], rec["attempts"]) == ("error", "suppressed", 0)
        assert smtp.messages == []
        clock.advance(3601)  # expired: ignored although DynamoDB's TTL has not deleted it yet
        assert addresses(api, acme) == []
        submit(api, acme, message("m1", to=["later@example.org"]))
        delivery.drain()
        assert record(api, acme, "m1")["status"] == "sent"
        assert [m.rcpt_tos for m in smtp.wait_for_messages(1)] == [("later@example.org",)]


def test_entries_go_with_their_tenant(api: ApiClient, tokens: dict[str, str], stack: Stack) -> None:
    assert api.post("/suppressions", token=tokens["acme"], body={"address": "x@example.org"}).status == 201
    assert api.delete("/tenant/acme", token=ADMIN_TOKEN).status == 200
    assert not [i for i in stack.raw_items()
                if i["pk"]["S"] == tenant_pk("acme") and i["sk"]["S"].startswith(SUPPRESSION_PREFIX)]
