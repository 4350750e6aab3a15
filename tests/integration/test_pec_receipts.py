"""PEC accounts: receipts read from the account's own mailbox on a real IMAP server (pymap, implicit TLS)
become pec_* events in the history and in the delivery report; no receipt in time gives pec_timeout."""

from __future__ import annotations

import email
from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain import clock
from tests.conftest import ApiClient, Stack, message
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import BouncePoller, event_types, record, submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer

PEC_USER = "sender@pec.example.com"
PEC_PASSWORD = "pec-secret-0001"


@pytest.fixture
def imap() -> Iterator[ImapTestServer]:
    with ImapTestServer(tls="ssl") as server:
        server.add_user(PEC_USER, PEC_PASSWORD)
        yield server



def pec_account(imap: ImapTestServer, smtp: ScriptedSmtpServer, **overrides: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "user": None, "password": None, "is_pec": True,
            "imap_host": imap.host, "imap_port": imap.port, "imap_tls": "ssl", "imap_user": PEC_USER,
            "imap_password": PEC_PASSWORD, **overrides}


@pytest.fixture
def acme(api: ApiClient, smtp: ScriptedSmtpServer, imap: ImapTestServer, receiver: ReportReceiver) -> str:
    token = api.create_tenant("acme", client_base_url=receiver.url)
    api.create_account(token, "pec1", **pec_account(imap, smtp))
    return token


def send(api: ApiClient, harness: DeliveryHarness, smtp: ScriptedSmtpServer, token: str,
         *ids: str) -> dict[str, str]:
    """Sends through the PEC account; returns each message's Message-ID header (receipts refer to it)."""
    before = len(smtp.messages)
    submit(api, token, *[message(mid, account_id="pec1") for mid in ids])
    harness.drain()
    sent = smtp.wait_for_messages(before + len(ids))[before:]
    headers = {}
    for received in sent:
        parsed = email.message_from_bytes(received.data)
        headers[str(parsed["X-Mail-Proxy-ID"]).split("/", 1)[1]] = str(parsed["Message-ID"])
    return headers


RECEIPTS = [
    ("accettazione", "pec_acceptance"),
    ("presa-in-carico", "pec_acceptance"),
    ("avvenuta-consegna", "pec_delivery"),
    ("mancata-consegna", "pec_error"),
    ("errore-consegna", "pec_error"),
    ("non-accettazione", "pec_error"),
]


def test_each_receipt_type_becomes_its_event_and_reaches_the_report(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    ids = [f"p{i}" for i in range(len(RECEIPTS))]
    headers = send(api, harness, smtp, acme, *ids)
    for i, (kind, _event) in enumerate(RECEIPTS):
        imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.pec_receipt(
            kind, original_message_id=headers[f"p{i}"], header=i % 2 == 0, error="casella piena"))
    assert poller.poll()["applied"] == len(RECEIPTS)
    harness.report()
    reported = {item["id"]: item for item in receiver.reports() if item["event"].startswith("pec_")}
    for i, (kind, event_type) in enumerate(RECEIPTS):
        rec = record(api, acme, f"p{i}")
        last = rec["history"][-1]
        assert (rec["status"], last["event_type"]) == ("sent", event_type), kind
        assert last["metadata"]["receipt"] == kind.replace("-", " ")
        assert last["metadata"]["recipient"] == "destinatario@pec.example.it"
        item = reported[f"p{i}"]
        assert item["pec_event"] == event_type and isinstance(item["pec_ts"], int)
        assert item["pec_details"].startswith(f"PEC {kind.replace('-', ' ')}")
        if event_type == "pec_error":
            assert item["pec_details"].endswith("casella piena")


def test_a_delivery_receipt_carrying_the_original_is_matched_by_its_x_mail_proxy_id(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer) -> None:
    send(api, harness, smtp, acme, "p1")
    imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.pec_receipt("avvenuta-consegna", tenant_id="acme",
                                                                   message_id="p1"))
    poller.poll()
    assert event_types(api, acme, "p1") == ["sent", "pec_delivery"]


def test_a_receipt_naming_another_tenants_message_is_not_applied(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer) -> None:
    other = api.create_tenant("globex")
    api.create_account(other, "smtp1", host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    submit(api, other, message("p1"))
    headers = send(api, harness, smtp, acme, "p1")
    imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.pec_receipt("accettazione", tenant_id="globex",
                                                                   message_id="p1",
                                                                   original_message_id=headers["p1"]))
    assert poller.poll()["applied"] == 0
    assert event_types(api, other, "p1") == ["sent"]
    assert event_types(api, acme, "p1") == ["sent"]


def test_a_pec_message_without_acceptance_in_time_gets_pec_timeout_once(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    headers = send(api, harness, smtp, acme, "late", "accepted")
    imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.pec_receipt("accettazione",
                                                                   original_message_id=headers["accepted"]))
    assert poller.poll()["pec_timeouts"] == 0
    clock.advance(29 * 60)
    assert poller.poll()["pec_timeouts"] == 0
    clock.advance(2 * 60)
    assert poller.poll()["pec_timeouts"] == 1
    assert poller.poll()["pec_timeouts"] == 0
    assert event_types(api, acme, "late") == ["sent", "pec_timeout"]
    assert event_types(api, acme, "accepted") == ["sent", "pec_acceptance"]
    harness.report()
    [timeout] = [i for i in receiver.reports() if i["id"] == "late" and i["event"] == "pec_timeout"]
    assert timeout["pec_event"] == "pec_timeout" and "30 minutes" in timeout["pec_details"]


def test_an_ordinary_account_gets_no_pec_tracking(
        api: ApiClient, harness: DeliveryHarness, poller: BouncePoller, smtp: ScriptedSmtpServer) -> None:
    token = api.create_tenant("plain")
    api.create_account(token, "smtp1", host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    submit(api, token, message("m1"))
    harness.drain()
    clock.advance(3600)
    assert poller.poll() == {"mailboxes": 0, "failed": 0, "messages": 0, "applied": 0, "ignored": 0,
                             "pec_timeouts": 0, "skipped": 0}
    assert event_types(api, token, "m1") == ["sent"]


def test_pec_account_settings_are_validated_and_its_imap_password_never_shown(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, imap: ImapTestServer) -> None:
    token = api.create_tenant("acme")
    bad = api.post("/account", token=token, body={"id": "x", "host": "smtp.example.com", "port": 587,
                                                   "is_pec": True})
    assert bad.status == 422 and "imap_host" in bad.text
    stray = api.post("/account", token=token, body={"id": "x", "host": "smtp.example.com", "port": 587,
                                                     "imap_host": "imap.example.com"})
    assert stray.status == 422
    api.create_account(token, "pec1", **pec_account(imap, smtp, imap_password="separate-imap-secret"))
    view = api.get("/account/pec1", token=token).json
    assert view["is_pec"] is True
    assert view["imap"] == {"host": imap.host, "port": imap.port, "user": PEC_USER, "folder": "INBOX",
                            "tls": "ssl", "has_password": True}
    assert "separate-imap-secret" not in str(stack.raw_items()) and "separate-imap-secret" not in str(view)
    legacy = api.post("/account", token=token, body={"id": "old", "host": "smtp.example.com", "port": 587,
                                                      "is_pec_account": True, "imap_host": "imap.example.com"})
    assert legacy.status == 201 and api.get("/account/old", token=token).json["is_pec"] is True


def test_a_mail_of_1200_nested_parts_in_a_pec_mailbox_is_skipped_and_the_receipt_after_it_applied(
        api: ApiClient, acme: str, harness: DeliveryHarness, poller: BouncePoller, imap: ImapTestServer,
        smtp: ScriptedSmtpServer, stack: Stack) -> None:
    headers = send(api, harness, smtp, acme, "p1")
    imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.deeply_nested(1200, subject="ACCETTAZIONE: Your order"))
    last = imap.deliver(PEC_USER, PEC_PASSWORD, returned_mail.pec_receipt("accettazione",
                                                                          original_message_id=headers["p1"]))
    result = poller.poll()
    assert (result["applied"], result["skipped"], result["failed"]) == (1, 1, 0)
    assert event_types(api, acme, "p1") == ["sent", "pec_acceptance"]
    position = MailRepository(stack.table_name).get_mailbox_position("acme", "pec#pec1")
    assert position is not None and position[1] == last
