"""Every outcome of a message and of a report is counted in CloudWatch (EMF lines on stdout), and can be followed
in the logs.

The handlers run in-process against moto, as in ``test_delivery`` and ``test_reports``; what they print is
captured and every embedded-metric-format blob parsed. Failures are counted twice: ``MessagesFailed`` alone
(what the error-rate alarm reads) and once more with a ``reason_class`` dimension. No metric ever carries a
tenant or message id as a dimension.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_PREFIX, message_pk
from mail_proxy.adapters.observability import FailureClass
from mail_proxy.adapters.observability import logger as powertools_logger
from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, submit
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer

ALLOWED_DIMENSIONS = {"service", "stage", "reason_class"}


@dataclass(frozen=True)
class Emitted:
    namespace: str
    name: str
    value: float
    dimensions: dict[str, str]


def parse_emf(text: str) -> list[Emitted]:
    found = []
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = {d: blob[d] for dimension_set in directive["Dimensions"] for d in dimension_set}
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                total = sum(values) if isinstance(values, list) else values
                found.append(Emitted(directive["Namespace"], metric["Name"], total, dimensions))
    return found


class MetricsCapture:
    """What the handlers printed as metrics since the test began."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.seen: list[Emitted] = []

    def all(self) -> list[Emitted]:
        self.seen.extend(parse_emf(self.capsys.readouterr().out))
        return self.seen

    def total(self, name: str, reason_class: str | None = None) -> float:
        """The sum of a metric; with ``reason_class``, of its per-class series, else of the plain one."""
        return sum(m.value for m in self.all()
                   if m.name == name and m.dimensions.get("reason_class") == reason_class)


@pytest.fixture
def emf(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> MetricsCapture:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # the local stack turns them off for its console
    capsys.readouterr()
    return MetricsCapture(capsys)


@pytest.fixture
def delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)  # rate-limit windows must not roll over during a test
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str = "acme", **fields: Any) -> str:
    resp = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": tenant_id, **fields})
    assert resp.status == 201, resp.text
    token = str(resp.json["api_key"])
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def status_of(api: ApiClient, token: str, mid: str) -> str:
    return str(api.get(f"/messages/{mid}", token=token).json["status"])


# ------------------------------------------------------------------------------------------------ the API


def test_accepted_and_rejected_messages_are_counted_at_the_api(
        api: ApiClient, smtp: ScriptedSmtpServer, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    answer = submit(api, token, message("ok1"), message("ok2"), message("bad", to=["not-an-address"]))
    assert answer["queued"] == 2 and len(answer["rejected"]) == 1
    assert emf.total("MessagesAccepted") == 2
    assert emf.total("MessagesRejected") == 1


def test_a_replayed_idempotent_request_is_not_counted_twice(
        api: ApiClient, smtp: ScriptedSmtpServer, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    for _ in range(2):
        resp = api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]},
                        headers={"Idempotency-Key": "k1"})
        assert resp.status == 200, resp.text
    assert emf.total("MessagesAccepted") == 1


# ------------------------------------------------------------------------------------------------ delivery


def test_a_sent_message_is_counted_as_sent(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    submit(api, token, message("m1"), message("m2"))
    delivery.drain()
    assert emf.total("MessagesSent") == 2
    assert emf.total("MessagesFailed") == 0 and emf.total("MessagesDeferred") == 0


def test_a_temporary_failure_is_counted_as_deferred(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    smtp.script.reply("DATA", "451 4.3.0 try again later")
    submit(api, token, message("m1"))
    delivery.drain()
    assert status_of(api, token, "m1") == "deferred"
    assert emf.total("MessagesDeferred") == 1
    assert emf.total("MessagesFailed") == 0


def test_a_550_is_counted_as_failed_with_reason_class_smtp_permanent(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    smtp.script.reply("DATA", "550 5.7.1 rejected as spam")
    submit(api, token, message("m1"))
    delivery.drain()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesFailed") == 1
    assert emf.total("MessagesFailed", FailureClass.SMTP_PERMANENT) == 1
    assert sum(emf.total("MessagesFailed", c) for c in FailureClass) == 1


def test_the_last_retry_failing_is_counted_as_retries_exhausted(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_RETRY_DELAYS", "10")
    delivery.sender_module.dispatcher.cache_clear()
    from mail_proxy.settings import reset_settings

    reset_settings()
    token = make_tenant(api, smtp)
    smtp.script.reply("DATA", "451 4.3.0 later", times=5)
    submit(api, token, message("m1"))
    for _ in range(3):
        delivery.drain()
        clock.advance(200)
        delivery.tick()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesDeferred") == 1
    assert emf.total("MessagesFailed", FailureClass.RETRIES_EXHAUSTED) == 1


def test_over_a_rate_limit_with_defer_is_counted_as_rate_limited_and_deferred(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    api.create_account(token, "limited", host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None,
                       limit_per_minute=2)
    submit(api, token, *[message(f"m{i}", account_id="limited") for i in range(5)])
    delivery.drain()
    assert emf.total("MessagesSent") == 2
    assert emf.total("MessagesRateLimited") == 3
    assert emf.total("MessagesDeferred") == 3


def test_over_a_rate_limit_with_reject_is_counted_as_failed_with_reason_class_rate_limit(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    api.create_account(token, "strict", host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None,
                       limit_per_minute=2, limit_behavior="reject")
    submit(api, token, *[message(f"m{i}", account_id="strict") for i in range(5)])
    delivery.drain()
    assert emf.total("MessagesRateLimited") == 3
    assert emf.total("MessagesFailed", FailureClass.RATE_LIMIT) == 3


def test_an_account_deleted_after_submission_is_counted_as_account_missing(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    submit(api, token, message("m1"))
    assert api.delete("/account/smtp1", token=token).status == 200
    delivery.drain()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesFailed", FailureClass.ACCOUNT_MISSING) == 1


def test_a_message_that_cannot_become_an_email_is_counted_as_malformed(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mail_proxy.usecases.delivery_preparation
    from mail_proxy.mail.mime_headers import MalformedMessageError

    def unbuildable(*_args: Any, **_kwargs: Any) -> Any:
        raise MalformedMessageError("subject contains a line break or control character")

    monkeypatch.setattr(mail_proxy.usecases.delivery_preparation, "build_email", unbuildable)
    token = make_tenant(api, smtp)
    submit(api, token, message("m1"))
    delivery.drain()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesFailed", FailureClass.MALFORMED) == 1


def test_a_message_whose_content_is_gone_is_counted_as_content_missing(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, stack: Stack,
        emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    submit(api, token, message("m1"))
    ddb = boto3.client("dynamodb")
    for item in stack.raw_items():
        if item["pk"]["S"] == message_pk("acme", "m1") and item["sk"]["S"].startswith(PAYLOAD_PREFIX):
            ddb.delete_item(TableName=stack.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
    delivery.drain()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesFailed", FailureClass.CONTENT_MISSING) == 1


def test_a_message_to_suppressed_addresses_only_is_counted_as_suppressed(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    resp = api.post("/suppressions", token=token, body={"address": "gone@example.org"})
    assert resp.status == 201, resp.text
    submit(api, token, message("m1", to=["gone@example.org"]))
    delivery.drain()
    assert status_of(api, token, "m1") == "error"
    assert emf.total("MessagesFailed", FailureClass.SUPPRESSED) == 1


def test_the_scheduler_counts_what_it_queued_when_due_and_what_it_recovered(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp)
    submit(api, token, message("later", deferred_ts=clock.now_ts() + 60), message("lost"))
    boto3.client("sqs").purge_queue(QueueUrl=delivery.stack.queue_url("SendQueueMedium"))  # "lost" never queued
    clock.advance(700)
    delivery.tick()
    assert emf.total("MessagesScheduled") == 1
    assert emf.total("MessagesRecovered") == 1
    delivery.drain()
    assert emf.total("MessagesSent") == 2


# ------------------------------------------------------------------------------------------------ reports


def test_delivered_reports_are_counted(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver,
        emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    submit(api, token, message("m1"), message("m2"))
    delivery.drain()
    delivery.report()
    assert emf.total("ReportEventsQueued") == 2
    assert emf.total("ReportsDelivered") == 2
    assert emf.total("ReportBatchesFailed") == 0


def test_a_refused_report_is_counted_as_a_failed_batch(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver,
        emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    receiver.answer(500, times=2)
    submit(api, token, message("m1"))
    delivery.drain()
    delivery.report()
    assert emf.total("ReportBatchesFailed") == 2
    assert emf.total("ReportsDelivered") == 1
    assert emf.total("ReportBatchesParked") == 0


def test_a_report_batch_refused_for_a_day_is_counted_as_parked_once(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver,
        emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    receiver.answer(503, times=1000)
    submit(api, token, message("m1"))
    delivery.drain()
    delivery.report(max_rounds=200)
    assert emf.total("ReportBatchesFailed") == 40
    assert emf.total("ReportBatchesParked") == 1


# ------------------------------------------------------------------------------------------------ dimensions


def test_no_metric_has_a_tenant_or_message_dimension(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver,
        emf: MetricsCapture) -> None:
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    smtp.script.reply("DATA", "550 5.7.1 no")
    smtp.script.reply("DATA", "451 4.3.0 later")
    submit(api, token, message("m1"), message("m2"), message("m3"), message("bad", to=[]))
    delivery.drain()
    delivery.report()
    metrics = emf.all()
    assert {m.name for m in metrics} >= {"MessagesAccepted", "MessagesRejected", "MessagesSent", "MessagesFailed",
                                         "MessagesDeferred", "ReportsDelivered"}
    for metric in metrics:
        assert metric.namespace == "MailProxy"
        assert set(metric.dimensions) <= ALLOWED_DIMENSIONS, metric
        assert {"service", "stage"} <= set(metric.dimensions), metric
        assert not {"acme", "m1", "m2", "m3", "bad"} & set(metric.dimensions.values()), metric
    assert {m.dimensions["reason_class"] for m in metrics if "reason_class" in m.dimensions} <= set(FailureClass)


# ------------------------------------------------------------------------------------------------ logs


class LogLines(logging.Handler):
    """Each record of the proxy's logger as the JSON line CloudWatch would store."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(powertools_logger.registered_formatter.format(record)))


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    target = logging.getLogger(powertools_logger.name)
    target.addHandler(handler)
    yield handler
    target.removeHandler(handler)


def test_a_message_can_be_followed_through_the_logs_by_tenant_and_id(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver,
        log_lines: LogLines) -> None:
    """What the saved "message life" Logs Insights query filters on, from submission to report."""
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    submit(api, token, message("order-1"), message("order-10"))
    delivery.drain()
    delivery.report()
    in_list = re.compile(r"(^| )order-1( |$)")
    life = [line for line in log_lines.lines if line.get("tenant_id") == "acme"
            and (line.get("message_id") == "order-1" or in_list.search(str(line.get("message_ids", ""))))]
    steps = {line["message"]: line for line in life}
    assert list(steps) == ["messages submitted", "message outcome", "report events queued", "report delivered"]
    assert steps["messages submitted"]["correlation_id"]  # the API request id
    assert steps["message outcome"]["status"] == "sent" and steps["message outcome"]["sqs_message_id"]
    assert steps["report events queued"]["stream_event_ids"]
    assert steps["report delivered"]["sqs_message_id"]


def test_a_failed_delivery_is_logged_with_its_reason_class(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, log_lines: LogLines) -> None:
    token = make_tenant(api, smtp)
    smtp.script.reply("DATA", "550 5.7.1 rejected as spam")
    submit(api, token, message("m1"))
    delivery.drain()
    [outcome] = [line for line in log_lines.lines if line["message"] == "message outcome"]
    assert outcome["tenant_id"] == "acme" and outcome["message_id"] == "m1"
    assert outcome["status"] == "error" and outcome["reason_class"] == "smtp_permanent"
    assert "550" in outcome["error"]
