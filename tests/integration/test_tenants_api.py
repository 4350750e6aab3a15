"""Tenants through the API: created with a key shown once, read without secrets, updated, deleted, re-keyed."""

from __future__ import annotations

import json

from mail_proxy.adapters.dynamodb.keys import TENANT_SK, message_pk, tenant_pk
from mail_proxy.security.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

CHOSEN_TOKEN = "acme-chosen-token-0123456789abcdef"
BEARER = "bearer-secret-for-reports-42"


def create_acme(api: ApiClient, **fields: object) -> str:
    return api.create_tenant("acme", name="Acme", **fields)


def test_create_tenant_answers_201_with_a_generated_api_key(api: ApiClient) -> None:
    resp = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme", "name": "Acme"})
    assert resp.status == 201
    assert resp.json["ok"] is True and resp.json["tenant_id"] == "acme"
    assert len(resp.json["api_key"]) >= 32
    status = api.get("/status", token=resp.json["api_key"]).json
    assert status["ok"] is True and status["active"] is True


def test_create_tenant_with_a_chosen_token_uses_it(api: ApiClient) -> None:
    assert create_acme(api, token=CHOSEN_TOKEN) == CHOSEN_TOKEN
    assert api.get("/tenant/acme", token=CHOSEN_TOKEN).status == 200


def test_create_tenant_applies_the_contract_defaults(api: ApiClient) -> None:
    create_acme(api)
    tenant = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert tenant["active"] is True
    assert tenant["client_sync_path"] == "/mail-proxy/sync"
    assert tenant["suspended_batches"] == []


def test_api_key_is_shown_only_at_creation(api: ApiClient) -> None:
    token = create_acme(api, token=CHOSEN_TOKEN, client_auth={"method": "bearer", "token": BEARER})
    answers = [api.get("/tenant/acme", token=ADMIN_TOKEN), api.get("/tenant/acme", token=token),
               api.get("/tenants", token=ADMIN_TOKEN)]
    for resp in answers:
        assert resp.status == 200
        for secret in (CHOSEN_TOKEN, hash_token(CHOSEN_TOKEN), BEARER):
            assert secret not in resp.text


def test_get_tenant_shows_has_api_key_and_client_auth_without_secrets(api: ApiClient) -> None:
    create_acme(api, client_base_url="https://app.example.com",
                client_auth={"method": "basic", "user": "reports", "password": "basic-pw-123"})
    tenant = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert tenant["has_api_key"] is True
    assert "token" not in tenant and "token_hash" not in tenant and "api_key" not in tenant
    assert tenant["client_auth"] == {"method": "basic", "user": "reports", "has_token": False,
                                     "has_password": True}


def test_list_tenants_shows_every_tenant_to_the_admin(api: ApiClient) -> None:
    create_acme(api)
    api.create_tenant("beta")
    tenants = api.get("/tenants", token=ADMIN_TOKEN).json["tenants"]
    assert [t["tenant_id"] for t in tenants] == ["acme", "beta"]
    assert all(t["has_api_key"] for t in tenants)


def test_list_tenants_active_only_leaves_out_inactive_tenants(api: ApiClient) -> None:
    create_acme(api)
    api.create_tenant("sleepy", active=False)
    everyone = api.get("/tenants", token=ADMIN_TOKEN).json["tenants"]
    active = api.get("/tenants?active_only=true", token=ADMIN_TOKEN).json["tenants"]
    assert [t["tenant_id"] for t in everyone] == ["acme", "sleepy"]
    assert [t["tenant_id"] for t in active] == ["acme"]


def test_duplicate_tenant_is_409_and_the_first_is_unchanged(api: ApiClient) -> None:
    token = create_acme(api)
    resp = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme", "name": "Impostor",
                                                        "token": CHOSEN_TOKEN})
    assert resp.status == 409 and "already exists" in resp.json["detail"]
    assert api.get("/tenant/acme", token=token).json["name"] == "Acme"
    assert api.get("/status", token=CHOSEN_TOKEN).status == 401


def test_tenant_can_update_itself(api: ApiClient) -> None:
    token = create_acme(api)
    resp = api.put("/tenant/acme", token=token, body={"name": "Acme Ltd", "client_base_url": "https://acme.example"})
    assert resp.status == 200 and resp.json == {"ok": True}
    tenant = api.get("/tenant/acme", token=token).json
    assert tenant["name"] == "Acme Ltd" and tenant["client_base_url"] == "https://acme.example"


def test_update_keeps_fields_it_does_not_name(api: ApiClient) -> None:
    token = create_acme(api, client_base_url="https://acme.example")
    api.put("/tenant/acme", token=token, body={"name": "Acme Ltd"})
    assert api.get("/tenant/acme", token=token).json["client_base_url"] == "https://acme.example"


def test_update_of_an_unknown_tenant_is_404(api: ApiClient) -> None:
    resp = api.put("/tenant/ghost", token=ADMIN_TOKEN, body={"name": "Ghost"})
    assert resp.status == 404
    assert api.get("/tenants", token=ADMIN_TOKEN).json["tenants"] == []


def test_get_of_an_unknown_tenant_is_404(api: ApiClient) -> None:
    assert api.get("/tenant/ghost", token=ADMIN_TOKEN).status == 404


def test_update_cannot_set_the_token(api: ApiClient) -> None:
    token = create_acme(api)
    resp = api.put("/tenant/acme", token=token, body={"token": ADMIN_TOKEN})
    assert resp.status == 422
    assert api.get("/tenants", token=token).status == 403


def test_delete_tenant_removes_its_accounts_and_messages(api: ApiClient, stack: Stack) -> None:
    token = create_acme(api)
    api.create_account(token)
    api.create_account(token, "smtp2")
    api.post("/commands/add-messages", token=token, body={"messages": [message("m1"), message("m2"),
                                                                       message("bad", to=["nope"])]})
    beta = api.create_tenant("beta")
    api.create_account(beta)
    api.post("/commands/add-messages", token=beta, body={"messages": [message("m1")]})

    resp = api.delete("/tenant/acme", token=ADMIN_TOKEN)

    assert resp.status == 200 and resp.json == {"ok": True}
    left = [i["pk"]["S"] for i in stack.raw_items()]
    assert not [pk for pk in left if pk == tenant_pk("acme") or pk.startswith(message_pk("acme", ""))]
    assert tenant_pk("beta") in left and message_pk("beta", "m1") in left
    assert api.get("/tenant/acme", token=ADMIN_TOKEN).status == 404


def test_delete_tenant_keeps_its_command_log(api: ApiClient) -> None:
    create_acme(api)
    api.delete("/tenant/acme", token=ADMIN_TOKEN)
    commands = [c["command"] for c in api.get("/command-log?tenant_id=acme", token=ADMIN_TOKEN).json["commands"]]
    assert "create_tenant" in commands and "delete_tenant" in commands


def test_deleted_tenants_token_stops_working(api: ApiClient) -> None:
    token = create_acme(api)
    api.delete("/tenant/acme", token=ADMIN_TOKEN)
    resp = api.get("/status", token=token)
    assert resp.status == 401 and "detail" in resp.json


def test_deleting_an_unknown_tenant_is_404(api: ApiClient) -> None:
    assert api.delete("/tenant/ghost", token=ADMIN_TOKEN).status == 404


def test_recreated_tenant_does_not_inherit_old_data(api: ApiClient) -> None:
    token = create_acme(api)
    api.create_account(token)
    api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]})
    api.delete("/tenant/acme", token=ADMIN_TOKEN)
    fresh = create_acme(api)
    assert api.get("/accounts", token=fresh).json["accounts"] == []
    assert api.get("/messages", token=fresh).json["messages"] == []


def test_new_api_key_replaces_the_old_one(api: ApiClient) -> None:
    old = create_acme(api)
    resp = api.post("/tenant/acme/api-key", token=ADMIN_TOKEN)
    assert resp.status == 200 and resp.json["ok"] is True
    new = resp.json["api_key"]
    assert new != old
    assert api.get("/status", token=old).status == 401
    assert api.get("/status", token=new).status == 200


def test_revoked_api_key_stops_working(api: ApiClient) -> None:
    token = create_acme(api)
    resp = api.delete("/tenant/acme/api-key", token=ADMIN_TOKEN)
    assert resp.status == 200 and resp.json == {"ok": True}
    assert api.get("/status", token=token).status == 401
    assert api.get("/tenant/acme", token=ADMIN_TOKEN).json["has_api_key"] is False


def test_revoked_tenant_gets_a_working_key_again_from_api_key(api: ApiClient) -> None:
    create_acme(api)
    api.delete("/tenant/acme/api-key", token=ADMIN_TOKEN)
    new = api.post("/tenant/acme/api-key", token=ADMIN_TOKEN).json["api_key"]
    assert api.get("/tenant/acme", token=new).status == 200


def test_revoking_a_key_twice_is_a_conflict_not_an_error(api: ApiClient) -> None:
    create_acme(api)
    api.delete("/tenant/acme/api-key", token=ADMIN_TOKEN)
    resp = api.delete("/tenant/acme/api-key", token=ADMIN_TOKEN)
    assert resp.status == 409 and "no API key" in resp.json["detail"]


def test_api_key_routes_on_an_unknown_tenant_are_404(api: ApiClient) -> None:
    assert api.post("/tenant/ghost/api-key", token=ADMIN_TOKEN).status == 404
    assert api.delete("/tenant/ghost/api-key", token=ADMIN_TOKEN).status == 404


def test_tenant_item_stores_only_the_token_hash(api: ApiClient, stack: Stack) -> None:
    create_acme(api, token=CHOSEN_TOKEN)
    tenant_item = next(i for i in stack.raw_items() if i["pk"]["S"] == tenant_pk("acme") and i["sk"]["S"] == TENANT_SK)
    assert tenant_item["token_hash"]["S"] == hash_token(CHOSEN_TOKEN)
    assert CHOSEN_TOKEN not in json.dumps(tenant_item)


def test_a_chosen_token_already_in_use_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import ADMIN_TOKEN

    taken = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "first", "token": "first-tenant-token-0001"})
    assert taken.status == 201
    for token in ("first-tenant-token-0001", ADMIN_TOKEN):
        again = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "second", "token": token})
        assert again.status == 409 and "in use" in again.json["detail"]
    assert api.get("/tenant/second", token=ADMIN_TOKEN).status == 404
