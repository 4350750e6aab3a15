"""Adversarial review of the deliverability work (issue 15): what a hostile recipient, mailbox or tenant
could do with complaints, bounces, unsubscribe links and DKIM keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ApiClient, Stack, message, reset_caches
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import BouncePoller, bounce_mailbox, event_types, submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.smtp_server import ScriptedSmtpServer

BOUNCES = "bounces@acme.example"
PASSWORD = "imap-secret-0001"


@pytest.fixture
def imap() -> Iterator[ImapTestServer]:
    with ImapTestServer(tls="starttls") as server:
        server.add_user(BOUNCES, PASSWORD)
        yield server


@pytest.fixture
def harness(stack: Stack, imap: ImapTestServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    assert imap.ca_file is not None
    monkeypatch.setenv("MAIL_PROXY_IMAP_CA_FILE", imap.ca_file)
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    reset_caches()
    delivery = DeliveryHarness(stack)
    yield delivery
    delivery.close()


@pytest.fixture
def poller(harness: DeliveryHarness) -> BouncePoller:
    return BouncePoller()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, imap: ImapTestServer, tenant_id: str,
                **fields: Any) -> str:
    token = api.create_tenant(tenant_id, bounce_imap=bounce_mailbox(imap, BOUNCES), return_path=BOUNCES, **fields)
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def paused(api: ApiClient, token: str) -> bool:
    [status] = api.get("/status", token=token).json["tenants"]
    return bool(status["reputation_paused"])


def rates(api: ApiClient, token: str, tenant_id: str) -> dict[str, Any]:
    return dict(api.get(f"/tenant/{tenant_id}", token=token).json["reputation"]["rates"])


# ------------------------------------------------------------------------------ complaints and bounces


def test_one_recipient_complaining_many_times_about_one_message_counts_once(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    """A hostile recipient (or anyone who saw one message's headers) mails the bounce address the same
    complaint again and again, each copy a little different: it must not pause the tenant."""
    token = make_tenant(api, smtp, imap, "acme", reputation_thresholds={
        "min_sends": 4, "complaint_warn": 0.3, "complaint_pause": 0.5})
    submit(api, token, *[message(f"m{i}", to=[f"r{i}@example.org"]) for i in range(4)])
    harness.drain()
    for _ in range(3):
        imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m0", recipient="r0@example.org"))
    poller.poll()
    assert rates(api, token, "acme")["complained"] == 1
    assert not paused(api, token)
    assert event_types(api, token, "m0") == ["sent", "complaint"]  # one event, not one per copy
    assert {e["address"] for e in api.get("/suppressions", token=token).json["suppressions"]} == {"r0@example.org"}


def test_repeated_hard_bounces_of_one_message_count_once(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    """The same for DSNs: a bounced message is one bounce for the guard however many reports name it."""
    token = make_tenant(api, smtp, imap, "acme", reputation_thresholds={
        "min_sends": 4, "bounce_warn": 0.3, "bounce_pause": 0.5})
    submit(api, token, *[message(f"m{i}", to=[f"r{i}@example.org"]) for i in range(4)])
    harness.drain()
    for _ in range(3):
        imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m0", recipient="r0@example.org"))
    poller.poll()
    assert rates(api, token, "acme")["bounced"] == 1
    assert not paused(api, token)
