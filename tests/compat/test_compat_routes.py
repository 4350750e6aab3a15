"""genro-mail-proxy's field names on the REST contract, its RPC routes' shapes and limits, without its client.

These run in-process (no package index needed); test_upstream_client.py drives the same routes with
upstream's own client.
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_TOKEN, ApiClient, message


@pytest.fixture
def acme(api: ApiClient) -> str:
    token = api.create_tenant("acme")
    api.create_account(token)
    return token


def test_documented_tenant_example_with_id_creates_the_tenant_and_records_show_id(api: ApiClient) -> None:
    created = api.post("/tenant", token=ADMIN_TOKEN, body={"id": "acme", "name": "ACME Corp",
                                                           "client_base_url": "https://api.acme.com"})
    assert created.status == 201, created.text
    record = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert record["id"] == record["tenant_id"] == "acme"
    assert [t["id"] for t in api.get("/tenants", token=ADMIN_TOKEN).json["tenants"]] == ["acme"]


def test_tenant_id_and_id_that_differ_or_unknown_fields_are_still_rejected(api: ApiClient) -> None:
    both = api.post("/tenant", token=ADMIN_TOKEN, body={"id": "acme", "tenant_id": "other"})
    assert both.status == 422 and "differ" in both.text
    typo = api.post("/tenant", token=ADMIN_TOKEN, body={"id": "acme", "nmae": "ACME"})
    assert typo.status == 422 and "unknown field" in typo.text
    assert api.get("/tenant/acme", token=ADMIN_TOKEN).status == 404


def test_message_with_from_addr_is_accepted_and_its_record_has_smtp_ts(api: ApiClient, acme: str) -> None:
    body = message("m1")
    body["from_addr"] = body.pop("from")
    answer = api.post("/commands/add-messages", token=acme, body={"messages": [body]})
    assert answer.json["queued"] == 1, answer.text
    record = api.get("/messages/m1", token=acme).json
    assert record["message"]["from"] == "sender@example.com"
    assert "smtp_ts" in record and record["smtp_ts"] == record["sent_ts"]
    clash = {**message("m2"), "from_addr": "other@example.com"}
    rejected = api.post("/commands/add-messages", token=acme, body={"messages": [clash]}).json["rejected"]
    assert rejected and "differ" in rejected[0]["reason"]
    typo = {**message("m3"), "form": "x@example.com"}
    assert api.post("/commands/add-messages", token=acme, body={"messages": [typo]}).json["rejected"]


def test_messages_named_like_an_rpc_verb_stay_reachable_by_id(api: ApiClient, acme: str) -> None:
    verbs = ["list", "get", "cleanup", "count_active"]
    api.post("/commands/add-messages", token=acme, body={"messages": [message(v) for v in verbs]})
    listed = api.get("/messages/list", token=acme)
    assert listed.status == 200 and isinstance(listed.json, list)  # the verb, a bare list
    assert sorted(m["id"] for m in listed.json) == sorted(verbs)
    for verb in verbs:
        got = api.get(f"/messages/get?message_id={verb}", token=acme)
        assert got.status == 200 and got.json["id"] == verb and got.json["pk"] == f"acme:{verb}"
        events = api.get(f"/messages/{verb}/events", token=acme)
        assert events.status == 200 and events.json["id"] == verb and events.json["events"] == []


def test_message_events_route_lists_the_history_of_the_callers_message_only(api: ApiClient, acme: str) -> None:
    other = api.create_tenant("other")
    api.post("/commands/add-messages", token=acme, body={"messages": [message("m1")]})
    assert api.get("/messages/m1/events", token=other).status == 404
    assert api.get("/messages/m1/events?tenant_id=acme", token=other).status == 403
    assert api.get("/messages/m1/events", token=acme).json["ok"] is True


def test_rpc_routes_validate_and_authorize_like_the_rest_routes(api: ApiClient, acme: str) -> None:
    assert api.get("/tenants/list").status == 401
    assert api.get("/tenants/list", token=acme).status == 403
    assert api.get("/messages/list", token=ADMIN_TOKEN).status == 422  # the admin names the tenant
    assert api.get("/messages/list?tenant_id=ghost", token=ADMIN_TOKEN).status == 404
    bad = api.post("/accounts/add", token=acme, body={"id": "a", "host": "smtp.example.com", "port": 25})
    assert bad.status == 422 and "port 25" in bad.text
    single = api.post("/messages/add", token=acme, body={**message("x"), "to": []})
    assert single.status == 422 and "recipient" in single.text
    assert api.post("/tenants/create_api_key", token=ADMIN_TOKEN,
                    body={"tenant_id": "acme", "expires_at": 1}).status == 422
    assert api.post("/messages/delete", token=acme, body={"message_pk": "nocolon"}).status == 422


def test_upstream_routes_without_an_equivalent_answer_501_saying_so(api: ApiClient, acme: str) -> None:
    for method, path in [("GET", "/instance/get"), ("POST", "/instance/update"), ("POST", "/instance/upgrade_to_ee"),
                         ("POST", "/command_log/purge"), ("GET", "/storages/list"), ("GET", "/accounts/list_pec")]:
        answer = api.request(method, path, token=ADMIN_TOKEN, body={} if method == "POST" else None)
        assert answer.status == 501, (path, answer.text)
        assert "not provided by this proxy" in answer.json["detail"]
    assert api.get("/instance/get").status == 401


def test_health_and_status_carry_upstreams_documented_fields(api: ApiClient, acme: str) -> None:
    assert api.get("/health").json == {"status": "ok", "ok": True}
    api.post("/commands/add-messages", token=acme, body={"messages": [message("m1"), message("m2")]})
    status = api.get("/status", token=acme).json
    assert status["ok"] is True and status["scheduler_active"] is True
    assert status["pending_messages"] == 2 and status["uptime_seconds"] >= 0


def test_swagger_ui_is_served_at_docs_without_a_token_and_redoc_leads_there(api: ApiClient) -> None:
    page = api.get("/docs")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "swagger" in page.text.lower() and "/tenants/add" in page.text
    moved = api.get("/redoc")
    assert moved.status == 302 and moved.headers["location"] == "/docs"
