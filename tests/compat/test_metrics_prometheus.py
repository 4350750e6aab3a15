"""GET /metrics: genro-mail-proxy's Prometheus counters, kept from the table stream at one write per tenant per
stream batch, read without touching the messages; the admin token is needed unless the operator opens it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.domain import clock
from mail_proxy.usecases.prometheus import count_stream_records, render
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, load_function_module, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer

SERIES = re.compile(r'^(gmp_\w+)\{tenant_id="([^"]*)",tenant_name="([^"]*)",account_id="([^"]*)",'
                    r'account_name="([^"]*)"\} ([0-9.]+)$')


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    with ScriptedSmtpServer() as sink:  # plain, no AUTH
        yield sink


@pytest.fixture
def delivery(stack: Stack, smtp: ScriptedSmtpServer) -> Iterator[DeliveryHarness]:
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def series(text: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            found[(match.group(1), match.group(2), match.group(4))] = float(match.group(6))
    return found


def test_metrics_need_the_admin_token_unless_the_operator_opens_them(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    token = api.create_tenant("acme")
    assert api.get("/metrics").status == 401
    assert api.get("/metrics", token="not-a-token").status == 401
    assert api.get("/metrics", token=token).status == 403  # a tenant token never sees other tenants' series
    answer = api.get("/metrics", token=ADMIN_TOKEN)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE gmp_sent_total counter" in answer.text and "gmp_pending_messages 0.0" in answer.text
    bearer = api.get("/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status == 200
    monkeypatch.setenv("METRICS_PUBLIC", "true")
    reset_caches()  # read once per cold start
    assert api.get("/metrics").status == 200


def test_sent_messages_are_counted_per_tenant_and_account_at_under_a_tenth_of_a_write_per_message(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    token = api.create_tenant("acme", name="Acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    writes: list[int] = []
    router = load_function_module("report_router")
    real = router.record_stream_metrics
    monkeypatch.setattr(router, "record_stream_metrics", lambda repo, records: writes.append(real(repo, records)))
    submitted = api.post("/commands/add-messages", token=token,
                         body={"messages": [message(f"m{i}") for i in range(20)]})
    assert submitted.json["queued"] == 20
    later = int(time.time()) + 20 * 86400
    api.post("/commands/add-messages", token=token, body={"messages": [message("pending", deferred_ts=later)]})
    delivery.drain()
    smtp.wait_for_messages(20)
    delivery.report()

    text = api.get("/metrics", token=ADMIN_TOKEN).text
    found = series(text)
    assert found[("gmp_sent_total", "acme", "smtp1")] == 20
    assert found[("gmp_errors_total", "acme", "smtp1")] == 0
    assert 'tenant_name="Acme"' in text
    assert sum(writes) / 20 <= 0.1, writes
    assert re.search(r"^gmp_pending_messages 1\.0$", text, re.M)  # the deferred one waits in its queue


def stream_record(tenant: str, account: str, old_events: list[dict[str, Any]], new_events: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    def image(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"pk": {"S": f"T#{tenant}"}, "sk": {"S": "STATE"}, "tenant_id": {"S": tenant}, "id": {"S": "m"},
                "account_id": {"S": account}, "status": {"S": "deferred"},
                "events": {"L": [{"M": {k: {"S": str(v)} for k, v in e.items()}} for e in events]}}
    return {"eventName": "MODIFY", "dynamodb": {"OldImage": image(old_events), "NewImage": image(new_events)}}


def test_rate_limit_deferrals_count_as_deferred_and_rate_limited_and_rejections_not_as_errors() -> None:
    first = {"event_id": "e1", "type": "deferred", "ts": 1, "description": "rate_limit_exceeded: limit_per_minute=1"}
    second = {"event_id": "e2", "type": "error", "ts": 2, "description": "rate_limit_exceeded: limit_per_day=9"}
    third = {"event_id": "e3", "type": "error", "ts": 3, "description": "550 no such user"}
    counts = count_stream_records([
        stream_record("acme", "smtp1", [], [first]),
        stream_record("acme", "smtp1", [first], [first, second]),  # only the new event counts
        stream_record("acme", "smtp2", [], [third]),
    ])
    assert counts["acme"] == {("deferred", "smtp1"): 1, ("rate_limited", "smtp1"): 2, ("errors", "smtp2"): 1}


def test_label_values_are_escaped() -> None:
    text = render({"acme": {("sent", "a"): 1}}, {"acme": 'Say "hi"\\\n'}, None)
    assert 'tenant_name="Say \\"hi\\"\\\\\\n"' in text
    assert "gmp_pending_messages" not in text
