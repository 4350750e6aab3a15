"""Complaints (ARF feedback reports) and the reputation guard, end to end in-process: messages sent to a real
SMTP sink, reports read from a real IMAP mailbox (pymap, STARTTLS) by the bounce poller function, events
reported to the application, and a tenant paused by its bounce rate until an administrator resumes it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mail_proxy.errors import ThrottledError
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import (
    BOUNCES,
    IMAP_PASSWORD,
    BouncePoller,
    event_types,
    make_tenant,
    record,
    submit,
)
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer

PASSWORD = IMAP_PASSWORD
# a small volume judges: warn at 20% hard bounces, pause at 50%
GUARD = {"min_sends": 4, "min_events": 1, "bounce_warn": 0.2, "bounce_pause": 0.5}



def send(api: ApiClient, harness: DeliveryHarness, token: str, *messages: dict[str, Any]) -> None:
    submit(api, token, *messages)
    harness.drain()


def suppressed(api: ApiClient, token: str) -> dict[str, str]:
    return {e["address"]: e["source"] for e in api.get("/suppressions", token=token).json["suppressions"]}


def emitted(out: str, name: str) -> float:
    """The sum of one metric over the EMF lines printed."""
    total = 0.0
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get(name)
            if value is not None:
                total += sum(value) if isinstance(value, list) else value
    return total


# ------------------------------------------------------------------------------------------- complaints


def test_an_arf_report_and_a_dsn_in_the_mailbox_become_complaint_and_bounce_events_that_suppress(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, receiver: ReportReceiver) -> None:
    token = make_tenant(api, smtp, imap, "acme", client_base_url=receiver.url)
    send(api, harness, token, message("m1", to=["angry@example.org"]), message("m2", to=["gone@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient="angry@example.org"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2", recipient="gone@example.org"))
    assert poller.poll()["applied"] == 2

    complained = record(api, token, "m1")
    assert complained["status"] == "sent"  # a complaint says nothing about delivery
    event = complained["history"][-1]
    assert event["event_type"] == "complaint"
    assert event["metadata"]["feedback_type"] == "abuse" and event["metadata"]["recipients"] == ["angry@example.org"]
    assert event["metadata"]["reported_by"] == "mx.feedback.example.net"
    bounced = record(api, token, "m2")
    assert bounced["status"] == "bounced" and bounced["history"][-1]["event_type"] == "bounce"
    assert suppressed(api, token) == {"angry@example.org": "complaint", "gone@example.org": "hard_bounce"}

    harness.report()
    items = {(i["id"], i["event"]): i for i in receiver.reports()}
    assert ("m1", "complaint") in items and ("m2", "bounce") in items
    assert items[("m1", "complaint")]["details"]["feedback_type"] == "abuse"
    assert isinstance(items[("m1", "complaint")]["event_ts"], int)

    # read again (a restarted poller): nothing is applied or counted twice
    poller.restart()
    assert poller.poll()["messages"] == 0
    assert event_types(api, token, "m1") == ["sent", "complaint"]
    assert api.get("/tenant/acme", token=token).json["reputation"]["rates"]["complained"] == 1

    send(api, harness, token, message("m3", to=["Angry@example.org"]))
    later = record(api, token, "m3")
    assert later["status"] == "error" and later["error"] == "suppressed"


def test_a_redacted_complaint_suppresses_the_originals_only_recipient_and_another_tenants_is_ignored(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    send(api, harness, token, message("m1", to=["quiet@example.org"]), message("m2"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient=None, to="redacted@example.net",
                                                      returned="headers"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("globex", "m2"))
    result = poller.poll()
    assert (result["applied"], result["ignored"]) == (1, 1)
    assert event_types(api, token, "m1") == ["sent", "complaint"]
    assert event_types(api, token, "m2") == ["sent"]
    assert suppressed(api, token) == {"quiet@example.org": "complaint"}


def test_a_not_spam_report_is_not_a_complaint(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    send(api, harness, token, message("m1"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", feedback_type="not-spam"))
    assert poller.poll()["ignored"] == 1
    assert event_types(api, token, "m1") == ["sent"] and suppressed(api, token) == {}


# ------------------------------------------------------------------------------------------- the guard


def test_the_guard_pauses_a_tenant_past_its_bounce_rate_and_an_admin_resume_sends_what_waited(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    reset_caches()
    poller.restart()
    token = make_tenant(api, smtp, imap, "acme", reputation_thresholds=GUARD)
    send(api, harness, token, *[message(f"m{i}", to=[f"r{i}@example.org"]) for i in range(4)])
    assert len(smtp.messages) == 4

    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m0", recipient="r0@example.org"))
    capsys.readouterr()
    poller.poll()  # 1 of 4: 25%, over the warn threshold
    assert emitted(capsys.readouterr().out, "ReputationWarnings") == 1
    guard = api.get("/tenant/acme", token=token).json["reputation"]
    assert guard["state"] == "warning" and "warn threshold 20%" in guard["warning"]
    assert guard["rates"] == {"sent": 4, "bounced": 1, "complained": 0, "bounce_rate": 0.25, "complaint_rate": 0.0}
    assert guard["accounts"]["smtp1"]["sent"] == 4 and guard["judged"] is True

    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1", recipient="r1@example.org"))
    poller.poll()  # 2 of 4: 50%, the pause threshold
    out = capsys.readouterr().out
    assert emitted(out, "ReputationPauses") == 1 and emitted(out, "ReputationWarnings") == 0
    [status] = api.get("/status", token=token).json["tenants"]  # the tenant's own token still works
    assert status["reputation_paused"] is True
    assert "bounce rate 50%" in status["reputation_paused_reason"]
    assert "pause threshold 50%" in status["reputation_paused_reason"]
    tenant = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert tenant["reputation"]["state"] == "paused" and tenant["reputation"]["paused_at"]
    assert tenant["reputation"]["paused_reason"] == status["reputation_paused_reason"]

    submit(api, token, message("m4", to=["new@example.org"]))
    harness.drain()
    harness.tick()
    harness.drain()
    assert record(api, token, "m4")["status"] == "pending" and len(smtp.messages) == 4  # held
    assert api.post("/tenant/acme/resume", token=token).status == 403  # only an administrator lifts it

    resumed = api.post("/tenant/acme/resume", token=ADMIN_TOKEN)
    assert resumed.status == 200, resumed.text
    harness.tick()
    harness.drain()
    assert record(api, token, "m4")["status"] == "sent"
    assert list(smtp.wait_for_messages(5)[-1].rcpt_tos) == ["new@example.org"]
    guard = api.get("/tenant/acme", token=ADMIN_TOKEN).json["reputation"]
    assert guard["state"] == "ok" and guard["paused_reason"] is None
    assert guard["rates"]["sent"] == 1 and guard["rates"]["bounced"] == 0  # the count starts afresh

    # the bounces that caused the pause do not pause it again: the next one is judged on the new count
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2", recipient="r2@example.org"))
    poller.poll()
    assert api.get("/status", token=token).json["tenants"][0]["reputation_paused"] is False


def test_a_complaint_rate_past_its_threshold_pauses_too(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme", reputation_thresholds={
        "min_sends": 2, "min_events": 1, "complaint_warn": 0.1, "complaint_pause": 0.5})
    send(api, harness, token, message("m1", to=["a@example.org"]), message("m2", to=["b@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient="a@example.org"))
    poller.poll()
    [status] = api.get("/status", token=token).json["tenants"]
    assert status["reputation_paused"] is True and "complaint rate 50%" in status["reputation_paused_reason"]


def test_thresholds_are_the_administrators_to_set(api: ApiClient, stack: Stack) -> None:
    token = api.create_tenant("acme")
    assert api.get("/tenant/acme", token=token).json["reputation"]["thresholds"]["bounce_pause"] == 0.1
    refused = api.put("/tenant/acme", token=token, body={"reputation_thresholds": {"bounce_pause": 0.9}})
    assert refused.status == 403
    invalid = api.put("/tenant/acme", token=ADMIN_TOKEN,
                      body={"reputation_thresholds": {"bounce_warn": 0.3, "bounce_pause": 0.2}})
    assert invalid.status == 422
    ok = api.put("/tenant/acme", token=ADMIN_TOKEN, body={"reputation_thresholds": {"bounce_pause": 0.2}})
    assert ok.status == 200, ok.text
    thresholds = api.get("/tenant/acme", token=token).json["reputation"]["thresholds"]
    assert thresholds["bounce_pause"] == 0.2 and thresholds["bounce_warn"] == 0.05


def test_a_reputation_counter_that_cannot_be_written_never_holds_up_a_delivery(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, imap: ImapTestServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    repo = harness.sender_module.dispatcher().repo

    def throttled(*_args: Any, **_kwargs: Any) -> None:
        raise ThrottledError("the table is busy, retry shortly", retry_after=2)

    monkeypatch.setattr(repo, "add_reputation_counts", throttled)
    send(api, harness, token, message("m1"))
    assert record(api, token, "m1")["status"] == "sent" and len(smtp.messages) == 1
    assert api.get("/tenant/acme", token=token).json["reputation"]["rates"]["sent"] == 0
