"""Bounces read from a real IMAP server on loopback (pymap, STARTTLS), through the bounce poller function,
into message events, statuses, the suppression list and the delivery report."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger as powertools_logger
from mail_proxy.usecases import bounce_polling
from mail_proxy.usecases.delivery_feedback import DeliveryFeedback
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import (
    BOUNCES,
    IMAP_PASSWORD,
    BouncePoller,
    bounce_mailbox,
    event_types,
    record,
    submit,
)
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer, SilentImapServer
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer


class LogLines(logging.Handler):
    """The proxy logger's records, as the JSON lines CloudWatch would keep, while the block runs."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(powertools_logger.registered_formatter.format(record)))

    def __enter__(self) -> LogLines:
        logging.getLogger(powertools_logger.name).addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        logging.getLogger(powertools_logger.name).removeHandler(self)
PASSWORD = IMAP_PASSWORD



def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str, **fields: Any) -> str:
    token = api.create_tenant(tenant_id, **fields)
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


@pytest.fixture
def acme(api: ApiClient, smtp: ScriptedSmtpServer, imap: ImapTestServer, receiver: ReportReceiver) -> str:
    return make_tenant(api, smtp, "acme", client_base_url=receiver.url, bounce_imap=bounce_mailbox(imap, BOUNCES),
                       return_path=BOUNCES)


def send(api: ApiClient, harness: DeliveryHarness, token: str, *messages: dict[str, Any]) -> None:
    submit(api, token, *messages)
    harness.drain()


def test_standard_dsn_hard_bounce_marks_the_message_bounced_suppresses_and_reports(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        receiver: ReportReceiver) -> None:
    send(api, harness, acme, message("m1", to=["gone@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1", recipient="gone@example.org"))
    assert poller.poll()["applied"] == 1
    rec = record(api, acme, "m1")
    assert rec["status"] == "bounced" and rec["sent_ts"]
    bounce = rec["history"][-1]
    assert bounce["event_type"] == "bounce"
    assert bounce["metadata"]["bounce_type"] == "hard" and bounce["metadata"]["bounce_code"] == "5.1.1"
    assert "User unknown" in bounce["description"]
    [entry] = api.get("/suppressions", token=acme).json["suppressions"]
    assert entry["address"] == "gone@example.org" and entry["source"] == "hard_bounce" and entry["message_id"] == "m1"
    harness.report()
    items = [i for i in receiver.reports() if i["id"] == "m1"]
    assert [i["event"] for i in items] == ["sent", "bounce"]
    assert items[1]["bounce_type"] == "hard" and items[1]["bounce_code"] == "5.1.1"
    assert "User unknown" in items[1]["bounce_reason"] and isinstance(items[1]["bounce_ts"], int)


def test_standard_dsn_soft_bounce_is_recorded_but_the_message_stays_sent(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer) -> None:
    send(api, harness, acme, message("m1", to=["full@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1", recipient="full@example.org",
                                                      action="delayed", status="4.2.2",
                                                      diagnostic="smtp; 452 4.2.2 Mailbox full"))
    poller.poll()
    rec = record(api, acme, "m1")
    assert rec["status"] == "sent"
    assert rec["history"][-1]["metadata"]["bounce_type"] == "soft"
    assert rec["history"][-1]["metadata"]["bounce_code"] == "4.2.2"
    assert api.get("/suppressions", token=acme).json["suppressions"] == []


def test_non_standard_bounce_is_recorded_as_hard_from_its_text(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer) -> None:
    send(api, harness, acme, message("m1", to=["nobody@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.plain_bounce("acme", "m1", recipient="nobody@example.org"))
    poller.poll()
    rec = record(api, acme, "m1")
    assert rec["status"] == "bounced"
    assert rec["history"][-1]["metadata"]["bounce_code"] == "5.1.1"
    assert [e["address"] for e in api.get("/suppressions", token=acme).json["suppressions"]] == ["nobody@example.org"]


def test_unrelated_mail_and_auto_replies_are_ignored_and_read_once(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer) -> None:
    send(api, harness, acme, message("m1"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.unrelated_mail())
    imap.deliver(BOUNCES, PASSWORD, returned_mail.auto_reply("acme", "m1"))
    first = poller.poll()
    assert (first["messages"], first["applied"], first["ignored"]) == (2, 0, 2)
    assert event_types(api, acme, "m1") == ["sent"]
    assert poller.poll()["messages"] == 0


def test_a_bounce_naming_another_tenants_message_is_not_applied(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    globex = make_tenant(api, smtp, "globex")
    send(api, harness, acme, message("m1"))
    send(api, harness, globex, message("m1"), message("g2"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("globex", "m1"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("globex", "g2"))
    result = poller.poll()
    assert (result["applied"], result["ignored"]) == (0, 2)
    for token, mid in ((acme, "m1"), (globex, "m1"), (globex, "g2")):
        assert record(api, token, mid)["status"] == "sent"
        assert event_types(api, token, mid) == ["sent"]
    assert api.get("/suppressions", token=globex).json["suppressions"] == []


def test_polls_resume_after_a_restart_and_a_new_uidvalidity_without_duplicates(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, receiver: ReportReceiver) -> None:
    token = make_tenant(api, smtp, "acme", client_base_url=receiver.url,
                        bounce_imap=bounce_mailbox(imap, BOUNCES, folder="Bounces"))
    send(api, harness, token, *[message(f"m{i}", to=[f"r{i}@example.org"]) for i in range(4)])
    first = [returned_mail.dsn("acme", f"m{i}", recipient=f"r{i}@example.org", action="delayed",
                               status="4.4.1", diagnostic="") for i in range(2)]
    for raw in first:
        imap.deliver(BOUNCES, PASSWORD, raw, folder="Bounces")
    assert poller.poll()["applied"] == 2
    poller.restart()  # a new container: only the table remembers where the mailbox was read up to
    assert poller.poll()["messages"] == 0
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2", recipient="r2@example.org"), folder="Bounces")
    assert poller.poll()["applied"] == 1
    # the folder is rebuilt (new UIDVALIDITY) and holds the old bounces again, plus a new one
    imap.recreate_folder(BOUNCES, PASSWORD, "Bounces")
    for raw in first:
        imap.deliver(BOUNCES, PASSWORD, raw, folder="Bounces")
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m3", recipient="r3@example.org"), folder="Bounces")
    poller.restart()
    result = poller.poll()
    assert (result["messages"], result["applied"]) == (3, 1)
    for i in range(4):
        assert event_types(api, token, f"m{i}") == ["sent", "bounce"]
    harness.report()
    bounce_reports = [item["id"] for item in receiver.reports() if item["event"] == "bounce"]
    assert sorted(bounce_reports) == ["m0", "m1", "m2", "m3"]


def test_a_failing_mailbox_never_blocks_the_other_tenants(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IMAP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    reset_caches()
    poller.restart()
    with SilentImapServer() as silent:
        make_tenant(api, smtp, "wrongpass", bounce_imap=bounce_mailbox(imap, BOUNCES, password="not-it"))
        make_tenant(api, smtp, "badtls", bounce_imap={**bounce_mailbox(imap, BOUNCES), "tls": "ssl"})
        make_tenant(api, smtp, "hangs", bounce_imap={"host": silent.host, "port": silent.port, "user": "u",
                                                     "password": "p", "tls": "none"})
        good = make_tenant(api, smtp, "good", bounce_imap=bounce_mailbox(imap, BOUNCES))
        send(api, harness, good, message("m1"))
        imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("good", "m1"))
        capsys.readouterr()
        with LogLines() as logs:
            result = poller.poll()
    assert (result["mailboxes"], result["failed"], result["applied"]) == (4, 3, 1)
    assert record(api, good, "m1")["status"] == "bounced"
    failures = {line["tenant_id"]: line["reason"] for line in logs.lines if line["message"] == "mailbox poll failed"}
    assert set(failures) == {"wrongpass", "badtls", "hangs"}
    assert "refused" in failures["wrongpass"] and "TLS" in failures["badtls"] and "1 s" in failures["hangs"]
    assert PASSWORD not in json.dumps(logs.lines) and "not-it" not in json.dumps(logs.lines)
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    counts = [m["MailboxPollFailed"] for m in emf if "MailboxPollFailed" in m]
    assert sum(sum(c) if isinstance(c, list) else c for c in counts) == 3


def test_a_suppressed_address_is_not_sent_to_again(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    send(api, harness, acme, message("m1", to=["gone@example.org"]))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1", recipient="gone@example.org"))
    poller.poll()
    assert len(smtp.messages) == 1
    send(api, harness, acme, message("m2", to=["Gone@Example.org"]),
         message("m3", to=["gone@example.org", "ok@example.org"], cc=["cc@example.org"]))
    blocked = record(api, acme, "m2")
    assert blocked["status"] == "error" and blocked["error"] == "suppressed"
    assert blocked["history"][-1]["metadata"] == {"suppressed": ["gone@example.org"]}
    [partial] = smtp.wait_for_messages(2)[1:]
    assert set(partial.rcpt_tos) == {"ok@example.org", "cc@example.org"}
    sent = record(api, acme, "m3")
    assert sent["status"] == "sent" and sent["history"][-1]["metadata"]["suppressed"] == ["gone@example.org"]
    harness.report()
    items = {i["id"]: i for i in receiver.reports() if i["id"] in ("m2", "m3")}
    assert items["m2"]["event"] == "error" and items["m2"]["error"] == "suppressed"
    assert items["m3"]["event"] == "sent" and items["m3"]["suppressed"] == ["gone@example.org"]


def test_the_tenants_return_path_is_the_envelope_sender_unless_the_message_has_one(
        api: ApiClient, acme: str, harness: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    send(api, harness, acme, message("m1"), message("m2", return_path="own-bounces@example.com"))
    senders = {m.data.split(b"X-Mail-Proxy-ID: acme/")[1][:2].decode(): m.mail_from
               for m in smtp.wait_for_messages(2)}
    assert senders == {"m1": BOUNCES, "m2": "own-bounces@example.com"}


def test_the_bounce_mailbox_password_is_encrypted_and_never_shown(
        api: ApiClient, acme: str, stack: Stack) -> None:
    view = api.get("/tenant/acme", token=ADMIN_TOKEN).json
    assert view["bounce_imap"]["has_password"] is True and "password" not in view["bounce_imap"]
    assert view["bounce_imap"]["tls"] == "starttls" and view["return_path"] == BOUNCES
    assert PASSWORD not in json.dumps(stack.raw_items())
    assert api.put("/tenant/acme", token=acme, body={"bounce_imap": None}).status == 200
    assert api.get("/tenant/acme", token=acme).json["bounce_imap"] is None


# ------------------------------------------------------------------------------------------ hostile mail


def emitted(out: str, metric: str) -> int:
    """How much of ``metric`` the invocation's EMF lines carry."""
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    values = [m[metric] for m in blobs if metric in m]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def read_up_to(stack: Stack) -> int:
    """The last UID of acme's bounce mailbox the poller has moved past."""
    position = MailRepository(stack.table_name).get_mailbox_position("acme", "bounce")
    assert position is not None
    return position[1]


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch, poller: BouncePoller) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    reset_caches()
    poller.restart()


@pytest.mark.usefixtures("metrics_on")
def test_a_mail_of_1200_nested_parts_is_skipped_and_counted_and_the_bounce_after_it_is_applied(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    send(api, harness, acme, message("m1", to=["gone@example.org"]))
    hostile = imap.deliver(BOUNCES, PASSWORD, returned_mail.deeply_nested(1200))
    bounce = imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1", recipient="gone@example.org"))
    capsys.readouterr()
    with LogLines() as logs:
        result = poller.poll()

    assert (result["applied"], result["skipped"], result["failed"]) == (1, 1, 0)
    assert record(api, acme, "m1")["status"] == "bounced"
    assert read_up_to(stack) == bounce > hostile
    skipped = [line for line in logs.lines if line["message"] == "unreadable returned mail skipped"]
    assert [(line["uid"], line["mailbox"]) for line in skipped] == [(hostile, "bounce")]
    assert "multipart or message parts" in skipped[0]["reason"]
    assert returned_mail.BODY_MARKER not in json.dumps(logs.lines)
    assert emitted(capsys.readouterr().out, "MailboxMessagesSkipped") == 1
    again = poller.poll()
    assert (again["messages"], again["skipped"], again["failed"]) == (0, 0, 0)


@pytest.mark.usefixtures("metrics_on")
def test_a_mail_whose_handling_keeps_failing_is_stepped_over_after_three_polls(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    send(api, harness, acme, message("m1"), message("m2"))
    original = DeliveryFeedback.apply_bounce

    def fails_on_m1(feedback: DeliveryFeedback, tenant_id: str, bounce: Any, key: str) -> Any:
        if bounce.reference and bounce.reference.message_id == "m1":
            raise RuntimeError("unexpected")
        return original(feedback, tenant_id, bounce, key)

    monkeypatch.setattr(DeliveryFeedback, "apply_bounce", fails_on_m1)
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1"))
    last = imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2"))
    for _ in range(bounce_polling.MAX_MAIL_ATTEMPTS - 1):
        result = poller.poll()
        assert (result["failed"], result["applied"], result["skipped"]) == (1, 0, 0)  # tried again next time
    assert record(api, acme, "m2")["status"] == "sent"
    capsys.readouterr()

    result = poller.poll()
    assert (result["failed"], result["applied"], result["skipped"]) == (0, 1, 1)
    assert record(api, acme, "m2")["status"] == "bounced" and record(api, acme, "m1")["status"] == "sent"
    assert read_up_to(stack) == last
    assert emitted(capsys.readouterr().out, "MailboxMessagesSkipped") == 1


def test_a_mail_whose_handling_failed_once_is_applied_at_the_next_poll(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    send(api, harness, acme, message("m1"))
    original = DeliveryFeedback.apply_bounce
    calls: list[str] = []

    def fails_the_first_time(feedback: DeliveryFeedback, tenant_id: str, bounce: Any, key: str) -> Any:
        calls.append(bounce.reference.message_id)
        if len(calls) == 1:
            raise RuntimeError("the table was busy")
        return original(feedback, tenant_id, bounce, key)

    monkeypatch.setattr(DeliveryFeedback, "apply_bounce", fails_the_first_time)
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m1"))
    assert poller.poll()["failed"] == 1
    result = poller.poll()
    assert (result["failed"], result["applied"], result["skipped"]) == (0, 1, 0)
    assert calls == ["m1", "m1"] and record(api, acme, "m1")["status"] == "bounced"
