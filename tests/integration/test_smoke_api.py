from tests.conftest import ADMIN_TOKEN, ApiClient, message


def test_health_needs_no_token(api: ApiClient) -> None:
    resp = api.get("/health")
    assert resp.status == 200 and resp.json == {"status": "ok", "ok": True}


def test_tenant_account_and_message_round_trip(api: ApiClient) -> None:
    token = api.create_tenant("acme", name="Acme")
    api.create_account(token)
    resp = api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]})
    assert resp.status == 200, resp.text
    assert resp.json == {"ok": True, "queued": 1, "rejected": []}
    got = api.get("/messages/m1", token=token)
    assert got.status == 200, got.text
    assert got.json["status"] == "pending" and got.json["message"]["subject"] == "Subject m1"
    assert api.get("/tenants", token=ADMIN_TOKEN).json["tenants"][0]["tenant_id"] == "acme"
