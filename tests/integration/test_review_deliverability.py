"""Adversarial review of the deliverability work (issue 15): what a hostile recipient, mailbox or tenant
could do with complaints, bounces, unsubscribe links and DKIM keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import (
    BOUNCES,
    IMAP_PASSWORD,
    BouncePoller,
    event_types,
    make_tenant,
    submit,
)
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.smtp_server import ScriptedSmtpServer

PASSWORD = IMAP_PASSWORD


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




def test_a_second_recipient_complaining_about_the_same_message_is_still_suppressed(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    """The count is per message, the suppression per person: each recipient who complains stops getting mail."""
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("m1", to=["a@example.org", "b@example.org"]))
    harness.drain()
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient="a@example.org"))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient="b@example.org"))
    poller.poll()
    assert {e["address"] for e in api.get("/suppressions", token=token).json["suppressions"]} == \
        {"a@example.org", "b@example.org"}
    assert rates(api, token, "acme")["complained"] == 1



def test_a_hard_bounce_of_a_message_not_yet_sent_is_not_counted(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    """Only a message the proxy sent can bounce: a DSN naming one still waiting (scheduled for tomorrow) is
    no bounce of this tenant's sending, and must not count against it."""
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("later", deferred_ts=clock.now_ts() + 86400))
    harness.drain()
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "later"))
    poller.poll()
    assert rates(api, token, "acme")["bounced"] == 0

def test_one_complaint_alone_does_not_pause_a_tenant_at_the_default_thresholds(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, stack: Stack) -> None:
    from mail_proxy.adapters.dynamodb import MailRepository
    from mail_proxy.domain.reputation import SENT
    from mail_proxy.usecases.reputation_guard import ReputationGuard

    token = make_tenant(api, smtp, imap, "acme")
    ReputationGuard(MailRepository(stack.table_name)).record("acme", "smtp1", SENT, 149)
    submit(api, token, message("m1", to=["grumpy@example.org"]))
    harness.drain()
    assert rates(api, token, "acme")["sent"] == 150
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient="grumpy@example.org"))
    poller.poll()
    assert not paused(api, token)

def test_a_stranger_guessing_message_ids_cannot_bounce_other_recipients_messages(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("m1", to=["me@example.org"]), message("m2", to=["victim@example.org"]))
    harness.drain()
    # what the stranger (the recipient of m1) writes: a DSN naming acme/m2, never having seen m2 (so without
    # m2's X-Mail-Proxy-Tag: none, or the tag of m1 they did see)
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2", recipient="victim@example.org", tag=None))
    imap.deliver(BOUNCES, PASSWORD, returned_mail.dsn("acme", "m2", recipient="victim@example.org",
                                                      tag=returned_mail.tag_for("acme", "m1")))
    poller.poll()
    assert event_types(api, token, "m2") == ["sent"]
    assert api.get("/suppressions", token=token).json["suppressions"] == []

# ------------------------------------------------------------------------------ unsubscribe links

PUBLIC_URL = "http://api.test"
FORM = b"List-Unsubscribe=One-Click"


@pytest.fixture
def linked(stack: Stack, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("PUBLIC_API_URL", PUBLIC_URL)
    reset_caches()
    harness = DeliveryHarness(stack)
    harness.sender_module.dispatcher().sleep = lambda _s: None
    yield harness
    harness.close()


def _link(smtp: ScriptedSmtpServer, count: int) -> str:
    mail = message_from_bytes(smtp.wait_for_messages(count)[-1].data)
    found = re.search(re.escape(PUBLIC_URL) + r"(/unsubscribe/[A-Za-z0-9_.-]+)>",
                      str(mail["List-Unsubscribe"]).replace("\r\n", ""))
    assert found, mail["List-Unsubscribe"]
    return found.group(1)


def _call(api: ApiClient, method: str, path: str, body: bytes = b"") -> tuple[int, str]:
    headers = [("content-type", "application/x-www-form-urlencoded")] if body else []
    response = api.gateway.handle(method, path, headers, body)
    text = response.body.decode("utf-8") if isinstance(response.body, bytes) else str(response.body or "")
    return response.status, text


def _unsubscribing_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str) -> str:
    token = api.create_tenant(tenant_id, unsubscribe={"default": True, "per_batch": True})
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def test_markup_in_the_list_name_is_shown_as_text_on_the_unsubscribe_pages(
        api: ApiClient, smtp: ScriptedSmtpServer, linked: DeliveryHarness) -> None:
    """The list name is the tenant's batch_code: a hostile tenant (or a careless one) must not get script onto a
    page served from the proxy's own origin."""
    token = _unsubscribing_tenant(api, smtp, "acme")
    hostile = '"><script>alert(1)</script><img/src=x/onerror=alert(2)>'
    submit(api, token, message("m1", batch_code=hostile, to=["o'brien+x@example.org"]))
    linked.drain()
    path = _link(smtp, 1)
    for method, body in (("GET", b""), ("POST", FORM)):
        status, text = _call(api, method, path, body)
        assert status == 200, text
        assert "<script" not in text and "<img" not in text
        assert "&lt;script&gt;" in text


def test_a_head_request_from_a_link_scanner_unsubscribes_nobody_and_is_no_server_error(
        api: ApiClient, smtp: ScriptedSmtpServer, linked: DeliveryHarness) -> None:
    token = _unsubscribing_tenant(api, smtp, "acme")
    submit(api, token, message("m1"))
    linked.drain()
    path = _link(smtp, 1)
    for method in ("HEAD", "OPTIONS", "PUT", "DELETE"):
        status, _text = _call(api, method, path, FORM)
        assert status < 500 and status != 200, (method, status)
    assert api.get("/suppressions", token=token).json["suppressions"] == []


def test_a_link_of_a_deleted_tenant_suppresses_nothing_for_a_new_tenant_of_the_same_id(
        api: ApiClient, smtp: ScriptedSmtpServer, linked: DeliveryHarness) -> None:
    """An administrator deletes a tenant and later gives its id to someone else: the old tenant's links,
    still in its recipients' mailboxes, are not valid for the new one."""
    token = _unsubscribing_tenant(api, smtp, "acme")
    submit(api, token, message("m1", to=["reader@example.org"]))
    linked.drain()
    path = _link(smtp, 1)
    assert api.delete("/tenant/acme", token=ADMIN_TOKEN).status in (200, 204)
    assert _call(api, "POST", path, FORM)[0] == 404
    clock.advance(3600)
    token = _unsubscribing_tenant(api, smtp, "acme")
    status, _text = _call(api, "POST", path, FORM)
    assert status == 404
    assert api.get("/suppressions", token=token).json["suppressions"] == []


def test_a_redacted_complaint_about_a_bcc_only_message_suppresses_its_only_recipient(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    """A newsletter sent with the recipient in Bcc only: the provider redacts the address, and the one person
    the message went to must still be suppressed (as for a message with one To)."""
    token = make_tenant(api, smtp, imap, "acme")
    m1 = message("m1", bcc=["hidden@example.org"])
    del m1["to"]
    submit(api, token, m1)
    harness.drain()
    assert event_types(api, token, "m1") == ["sent"]
    imap.deliver(BOUNCES, PASSWORD, returned_mail.arf("acme", "m1", recipient=None, to="undisclosed-recipients:;"))
    poller.poll()
    assert event_types(api, token, "m1") == ["sent", "complaint"]
    assert [e["address"] for e in api.get("/suppressions", token=token).json["suppressions"]] == ["hidden@example.org"]


# ------------------------------------------------------------------------------ DKIM with today's message forms


def test_every_new_message_form_with_a_one_click_link_is_signed_so_that_dkimpy_verifies_it(
        api: ApiClient, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers the proxy adds (List-Unsubscribe and -Post, Message-ID, Sender, a given Date), an IDN From
    domain, international addresses (SMTPUTF8), an inline image and a forwarded message: all signed as sent."""
    import base64

    import dkim

    from tests.integration.test_dkim import PublishedDns

    inner = (b"From: Ada <ada@example.org>\r\nTo: shop@example.com\r\nSubject: Original\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
             b"Gr\xc3\xbc\xc3\x9fe.\r\n.a dot line\r\n")
    png = b"\x89PNG" + bytes(range(256))
    monkeypatch.setenv("PUBLIC_API_URL", PUBLIC_URL)
    reset_caches()
    dns = PublishedDns()
    with ScriptedSmtpServer(smtputf8=True) as smtp:
        harness = DeliveryHarness(stack)
        harness.sender_module.dispatcher().sleep = lambda _s: None
        try:
            token = api.create_tenant("acme")
            api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
            resp = api.post("/tenant/acme/dkim", token=token, body={"domain": "bücher.example", "selector": "s1"})
            assert resp.status == 201, resp.text
            dns.publish(resp.json)
            submit(api, token, message(
                "m1", **{"from": "Bücher <news@bücher.example>"}, to=["jörg@example.org"], unsubscribe=True,
                subject="Grüße  und  mehr", html_body='<p>Hi <img src="cid:logo@x"></p>', body="Hi \n\n",
                headers={"Sender": "ops@bücher.example", "Date": "Mon, 6 Jan 2025 10:00:00 +0100"},
                attachments=[{"filename": "logo.png", "storage_path": base64.b64encode(png).decode(),
                              "fetch_mode": "base64", "mime_type": "image/png", "content_id": "<logo@x>"},
                             {"filename": "q.eml", "storage_path": base64.b64encode(inner).decode(),
                              "fetch_mode": "base64", "mime_type": "message/rfc822"}]))
            harness.drain()
            [sent] = smtp.wait_for_messages(1)
        finally:
            harness.close()
    raw = sent.data
    assert b"List-Unsubscribe-Post" in raw and b"d=xn--bcher-kva.example" in raw.replace(b"\r\n\t", b"")
    assert dkim.verify(raw, dnsfunc=dns.lookup)
    head = raw.split(b"\r\n\r\n")[0].lower()
    signed = re.sub(rb"\s+", b"", head.split(b"h=", 1)[1].split(b";", 1)[0]).split(b":")
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"message-id", b"date", b"from"} <= set(signed)
    # the Sender the proxy writes (shown as "on behalf of" by mail clients) is signed too: changed on the way,
    # the signature fails
    assert b"sender" in signed
    assert not dkim.verify(raw.replace(b"Sender: ops@", b"Sender: ceo@"), dnsfunc=dns.lookup)
