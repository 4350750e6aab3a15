"""The sample events in events/ (also used by `sam local invoke`) drive each handler as AWS would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local.lambdas import LocalFunction
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, load_function_module
from tests.fixtures.smtp_server import ScriptedSmtpServer

EVENTS = Path(__file__).resolve().parents[2] / "events"
TENANT_TOKEN = "acme-tenant-token-0001"


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def invoke(function: str, payload: dict[str, Any]) -> Any:
    module = load_function_module(function)
    return LocalFunction(f"local-{function}", module.lambda_handler, timeout_seconds=60).invoke(payload)


def test_api_health_event(stack: Stack) -> None:
    result = invoke("api", event("api_health.json"))
    assert result["statusCode"] == 200 and json.loads(result["body"]) == {"status": "ok", "ok": True}


def test_authorizer_event_resolves_the_tenant(api: ApiClient) -> None:
    api.create_tenant("acme", token=TENANT_TOKEN)
    assert invoke("authorizer", event("authorizer_request.json")) == {
        "isAuthorized": True, "context": {"role": "tenant", "tenant_id": "acme"}}


def test_admin_token_in_the_sample_matches_the_test_admin(stack: Stack) -> None:
    assert event("api_list_tenants_admin.json")["headers"]["x-api-token"] == ADMIN_TOKEN
    result = invoke("api", event("api_list_tenants_admin.json"))
    assert result["statusCode"] == 200 and json.loads(result["body"]) == {"ok": True, "tenants": []}


def test_add_messages_then_sender_then_scheduler_events(api: ApiClient, stack: Stack) -> None:
    with ScriptedSmtpServer() as smtp:
        api.create_tenant("acme", token=TENANT_TOKEN)
        api.create_account(TENANT_TOKEN, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
        result = invoke("api", event("api_add_messages.json"))
        assert result["statusCode"] == 200, result["body"]
        assert json.loads(result["body"])["queued"] == 1
        load_function_module("sender").dispatcher.cache_clear()
        assert invoke("sender", event("sender_sqs_batch.json")) == {"batchItemFailures": []}
        assert len(smtp.wait_for_messages(1)) == 1
        assert api.get("/messages/order-1001-confirmation", token=TENANT_TOKEN).json["status"] == "sent"
        load_function_module("scheduler").wiring.cache_clear()
        tick = invoke("scheduler", event("scheduler_tick.json"))
        assert tick == {"queued": 0, "recovered": 0, "held": 0, "heartbeats": 0}


def test_bounce_poller_tick_event(api: ApiClient) -> None:
    api.create_tenant("acme", token=TENANT_TOKEN)
    load_function_module("bounce_poller").poller.cache_clear()
    assert invoke("bounce_poller", event("bounce_poller_tick.json")) == {
        "mailboxes": 0, "failed": 0, "messages": 0, "applied": 0, "ignored": 0, "pec_timeouts": 0, "skipped": 0}
