"""Returned mail must prove it is about a message the proxy sent: its X-Mail-Proxy-Tag. A stranger who has
seen one message knows the tenant id and the bounce address, never the tag of another message."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.conftest import ApiClient, message
from tests.fixtures import returned_mail
from tests.fixtures.bounce_poller import BOUNCES, IMAP_PASSWORD, BouncePoller, event_types, make_tenant, submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.smtp_server import ScriptedSmtpServer
from tests.integration.test_key_rotation import KEY_A, KEY_B, use_keys

WRONG_KEY = bytes(range(100, 132))


def _tag_under(key: bytes, tenant_id: str, message_id: str) -> str:
    from mail_proxy.security.crypto import KeyRing
    from mail_proxy.security.proxy_tags import make_tag
    return make_tag(KeyRing(key), tenant_id, message_id)


def _forgeries(build: Callable[..., bytes]) -> list[bytes]:
    """Reports naming acme/m2 as a stranger can write them: no tag, the tag of m1 (the message the stranger
    received), a well-formed tag made with a key that is not the proxy's."""
    return [build(tag=None), build(tag=returned_mail.tag_for("acme", "m1")),
            build(tag=_tag_under(WRONG_KEY, "acme", "m2"))]


def _reputation(api: ApiClient, token: str) -> dict[str, int]:
    rates = api.get("/tenant/acme", token=token).json["reputation"]["rates"]
    return {name: rates[name] for name in ("bounced", "complained")}


def _wrapped_as_dsn(original: bytes, recipient: str) -> bytes:
    """A DSN that returns ``original`` (as the sink received it) whole, as a receiving MTA writes it."""
    boundary = "report-" + uuid.uuid4().hex[:8]
    head = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@acme.example\r\nSubject: Undelivered Mail\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n"
        f"\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
    )
    return head.encode() + original + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("kind", ["dsn", "arf", "plain"])
def test_forged_reports_without_the_messages_tag_are_ignored(
        kind: str, api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("m1", to=["me@example.org"]), message("m2", to=["victim@example.org"]))
    harness.drain()
    builders: dict[str, Callable[..., bytes]] = {
        "dsn": lambda tag: returned_mail.dsn("acme", "m2", recipient="victim@example.org", tag=tag),
        "arf": lambda tag: returned_mail.arf("acme", "m2", recipient="victim@example.org", to="victim@example.org",
                                             tag=tag),
        "plain": lambda tag: returned_mail.plain_bounce("acme", "m2", recipient="victim@example.org", tag=tag),
    }
    for forged in _forgeries(builders[kind]):
        imap.deliver(BOUNCES, IMAP_PASSWORD, forged)
    result = poller.poll()
    assert (result["messages"], result["applied"], result["ignored"]) == (3, 0, 3)
    assert event_types(api, token, "m2") == ["sent"]
    assert api.get("/suppressions", token=token).json["suppressions"] == []
    assert _reputation(api, token) == {"bounced": 0, "complained": 0}


def test_a_real_bounce_of_a_sent_message_is_applied(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("m1", to=["gone@example.org"]))
    harness.drain()
    [sent] = smtp.wait_for_messages(1)
    assert b"X-Mail-Proxy-Tag: " + returned_mail.tag_for("acme", "m1").encode() in sent.data
    imap.deliver(BOUNCES, IMAP_PASSWORD, _wrapped_as_dsn(sent.data, "gone@example.org"))
    result = poller.poll()
    assert (result["applied"], result["ignored"]) == (1, 0)
    assert event_types(api, token, "m1") == ["sent", "bounce"]
    assert [s["address"] for s in api.get("/suppressions", token=token).json["suppressions"]] == ["gone@example.org"]


def test_a_bounce_of_a_message_sent_before_a_key_rotation_still_applies(
        api: ApiClient, smtp: ScriptedSmtpServer, harness: DeliveryHarness, poller: BouncePoller,
        imap: ImapTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_tenant(api, smtp, imap, "acme")
    submit(api, token, message("m1", to=["gone@example.org"]))
    harness.drain()
    [sent] = smtp.wait_for_messages(1)
    assert _tag_under(KEY_A, "acme", "m1").encode() in sent.data
    use_keys(monkeypatch, KEY_B, previous=KEY_A)  # the tenant's IMAP password stays readable too
    assert returned_mail.tag_for("acme", "m1") != _tag_under(KEY_A, "acme", "m1")  # the sender now tags with KEY_B
    poller.restart()
    imap.deliver(BOUNCES, IMAP_PASSWORD, _wrapped_as_dsn(sent.data, "gone@example.org"))
    assert poller.poll()["applied"] == 1
    assert event_types(api, token, "m1") == ["sent", "bounce"]
