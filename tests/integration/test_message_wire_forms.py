"""Messages as Django and mail clients write them, on the wire of a real SMTP server: submitted through the
API, sent by the sender function, read back as the server received them."""

from __future__ import annotations

import base64
import email
import email.policy
import importlib.util
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from mail_proxy.mail.mime import build_email, message_bytes
from mail_proxy.mail.smtp_client import SmtpConnection
from mail_proxy.mail.smtp_replies import SmtpPermanentError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import AddressPolicy
from tests.conftest import ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, record, submit
from tests.fixtures.smtp_server import ScriptedSmtpServer

LOOPBACK = AddressPolicy(allow_loopback=True)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
INNER = (b"From: Ada <ada@example.org>\r\nTo: shop@example.com\r\nSubject: Original question\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
         b"Gr\xc3\xbc\xc3\x9fe from the original.\r\n.a line starting with a dot\r\n")


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    with ScriptedSmtpServer(smtputf8=True) as server:
        yield server


@pytest.fixture
def delivery(stack: Stack) -> Iterator[DeliveryHarness]:
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def tenant_at(api: ApiClient, server: ScriptedSmtpServer, tenant_id: str = "acme") -> str:
    token = api.create_tenant(tenant_id)
    api.create_account(token, host="127.0.0.1", port=server.port, tls="none", user=None, password=None)
    return token


@pytest.fixture
def tenant(api: ApiClient, smtp: ScriptedSmtpServer) -> str:
    return tenant_at(api, smtp)


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def delivered(api: ApiClient, token: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
              *messages: dict[str, Any]) -> list[Any]:
    answer = submit(api, token, *messages)
    assert answer["queued"] == len(messages), answer
    delivery.drain()
    return smtp.wait_for_messages(len(messages))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_message_with_only_bcc_is_sent_to_the_bcc_and_shows_no_recipient_header(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    only_bcc = message("m1", bcc=["hidden@example.org"])
    only_bcc.pop("to")
    received = delivered(api, tenant, delivery, smtp, only_bcc, message("m2", to=None, cc=["cc@example.org"]))
    by_recipients = {m.rcpt_tos: m for m in received}
    hidden = by_recipients[("hidden@example.org",)]
    assert b"hidden@example.org" not in hidden.data and "To" not in parsed(hidden.data)
    assert parsed(by_recipients[("cc@example.org",)].data)["Cc"] == "cc@example.org"
    assert record(api, tenant, "m1")["status"] == record(api, tenant, "m2")["status"] == "sent"


def test_an_inline_image_arrives_in_multipart_related_with_its_content_id(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    html = '<p>Hello <img src="cid:logo@shop.example"></p>'
    [received] = delivered(api, tenant, delivery, smtp, message(
        "m1", body="Hello", html_body=html,
        attachments=[{"filename": "logo.png", "storage_path": b64(PNG), "fetch_mode": "base64",
                      "mime_type": "image/png", "content_id": "<logo@shop.example>"},
                     {"filename": "terms.pdf", "storage_path": b64(b"%PDF-1.4"), "fetch_mode": "base64"}]))
    msg = parsed(received.data)
    assert msg.get_content_type() == "multipart/mixed"
    related, terms = msg.iter_parts()
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "multipart/alternative"
    body, image = related.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert image["Content-ID"] == "<logo@shop.example>" and image.get_content_disposition() == "inline"
    assert image.get_payload(decode=True) == PNG and image.get_filename() == "logo.png"
    assert terms.get_content_disposition() == "attachment" and terms["Content-ID"] is None


def test_a_forwarded_message_goes_out_as_message_rfc822_in_8bit_not_base64_with_its_name(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    [received] = delivered(api, tenant, delivery, smtp, message(
        "m1", attachments=[{"filename": "question.eml", "storage_path": b64(INNER), "fetch_mode": "base64",
                            "mime_type": "message/rfc822"}]))
    assert b"base64" not in received.data
    assert b"Gr\xc3\xbc\xc3\x9fe from the original." in received.data  # the 8-bit bytes as they were
    assert "BODY=8BITMIME" in received.mail_options
    forwarded = [part for part in parsed(received.data).walk() if part.get_content_type() == "message/rfc822"]
    [part] = forwarded
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert part.get_filename() == "question.eml" and part.get_param("name") == "question.eml"
    inner = part.get_payload(0)
    assert inner["Subject"] == "Original question"
    assert inner.get_content().replace("\r\n", "\n") == "Grüße from the original.\n.a line starting with a dot\n"


def test_an_international_domain_is_idna_encoded_in_rcpt_to_and_the_headers(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    [received] = delivered(api, tenant, delivery, smtp,
                           message("m1", to=["Jürgen <user@exämple.org>"], cc=["info@bücher.example"]))
    assert received.rcpt_tos == ("user@xn--exmple-cua.org", "info@xn--bcher-kva.example")
    assert "SMTPUTF8" not in received.mail_options  # ASCII once encoded: no extension needed
    assert received.data.isascii()
    msg = parsed(received.data)
    assert msg["To"].addresses[0].addr_spec == "user@xn--exmple-cua.org"
    assert msg["To"].addresses[0].display_name == "Jürgen"


def test_a_utf8_local_part_is_sent_with_smtputf8_when_the_server_offers_it(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    [received] = delivered(api, tenant, delivery, smtp, message("m1", to=["jürgen@exämple.org"]))
    assert "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ("jürgen@xn--exmple-cua.org",)
    assert "To: jürgen@xn--exmple-cua.org".encode() in received.data
    assert record(api, tenant, "m1")["status"] == "sent"


def test_a_utf8_local_part_fails_at_once_with_a_clear_error_where_the_server_lacks_smtputf8(
        api: ApiClient, delivery: DeliveryHarness) -> None:
    with ScriptedSmtpServer() as plain:
        token = tenant_at(api, plain, "plain")
        submit(api, token, message("m1", to=["jürgen@example.org"]), message("m2"))
        delivery.drain()
        assert [m.rcpt_tos for m in plain.wait_for_messages(1)] == [("rcpt@example.org",)]
    failed = record(api, token, "m1")
    assert failed["status"] == "error" and failed["attempts"] <= 1
    assert "SMTPUTF8" in failed["error"]
    assert record(api, token, "m2")["status"] == "sent"


def test_date_and_sender_given_by_the_application_are_carried(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    [received] = delivered(api, tenant, delivery, smtp, message("m1", headers={
        "Date": "Mon, 01 Jan 2024 10:00:00 +0100", "Sender": "Ops <ops@exämple.org>"}))
    msg = parsed(received.data)
    assert msg["Date"] == "Mon, 01 Jan 2024 10:00:00 +0100"
    assert msg["Sender"] == "Ops <ops@xn--exmple-cua.org>"
    assert len(msg.get_all("Date")) == 1


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="Django is not installed")
def test_a_django_message_with_only_bcc_an_inline_image_and_a_forwarded_message_arrives_as_written(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    """Django's own mail API through the backend (its add-messages call captured), then the proxy."""
    from email.mime.image import MIMEImage

    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL="web@example.com")
    from django.core.mail import EmailMessage as DjangoMessage
    from django.core.mail import EmailMultiAlternatives, get_connection

    from tests.client.fake_api import FakeApi

    forwarded = DjangoMessage("Original question", "Grüße", "ada@example.org", ["shop@example.com"])
    mail = EmailMultiAlternatives("Receipt", "See the logo", "Shop <shop@example.com>", bcc=["ärger@exämple.org"],
                                  headers={"Date": "Tue, 02 Jan 2024 09:30:00 +0000", "Sender": "ops@example.com"})
    mail.attach_alternative('<p><img src="cid:logo"></p>', "text/html")
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    mail.attach(image)
    mail.attach(None, forwarded, "message/rfc822")
    with FakeApi() as fake:
        fake.answer(200, {"ok": True, "queued": 1, "rejected": []})
        connection = get_connection("mail_proxy_client.django.EmailBackend", url=fake.url, token="t",
                                    account="smtp1", retries=0)
        assert connection.send_messages([mail]) == 1
        [submitted] = fake.requests[0].json()["messages"]
    [received] = delivered(api, tenant, delivery, smtp, submitted)
    assert received.rcpt_tos == ("ärger@xn--exmple-cua.org",) and "SMTPUTF8" in received.mail_options
    msg = parsed(received.data)
    assert msg["Date"] == "Tue, 02 Jan 2024 09:30:00 +0000" and msg["Sender"] == "ops@example.com"
    related = next(part for part in msg.walk() if part.get_content_type() == "multipart/related")
    [image_part] = [part for part in related.iter_parts() if part["Content-ID"] == "<logo>"]
    assert image_part.get_payload(decode=True) == PNG
    [rfc822] = [part for part in msg.walk() if part.get_content_type() == "message/rfc822"]
    assert rfc822["Content-Transfer-Encoding"] in ("7bit", "8bit")
    assert rfc822.get_filename() == "Original question.eml"
    assert rfc822.get_payload(0)["Subject"] == "Original question"


# ------------------------------------------------------------------------------ the SMTP client on its own


def utf8_message(reply_to: str) -> bytes:
    return message_bytes(build_email({"from": "shop@example.com", "to": ["ada@example.org"], "reply_to": reply_to,
                                      "subject": "Hi", "body": "x"}, tenant_id="t", message_id="m1"))


@pytest.mark.parametrize("pipelining", [False, True])
def test_smtputf8_is_asked_for_when_only_a_header_address_is_utf8(pipelining: bool) -> None:
    data = utf8_message("jürgen@example.org")
    with ScriptedSmtpServer(smtputf8=True, pipelining=pipelining) as server, SmtpConnection(SmtpSettings(
            "127.0.0.1", server.port, tls="none", timeout=5.0, address_policy=LOOPBACK)) as connection:
        connection.send("shop@example.com", ["jürgen@xn--exmple-cua.org"], data)
        [received] = server.wait_for_messages(1)
    assert "SMTPUTF8" in received.mail_options and received.rcpt_tos == ("jürgen@xn--exmple-cua.org",)
    assert "Reply-To: jürgen@example.org".encode() in received.data


def test_a_server_without_smtputf8_gets_nothing_and_the_error_is_permanent() -> None:
    data = utf8_message("jürgen@example.org")
    with ScriptedSmtpServer() as server, SmtpConnection(SmtpSettings(
            "127.0.0.1", server.port, tls="none", timeout=5.0, address_policy=LOOPBACK)) as connection:
        with pytest.raises(SmtpPermanentError, match="SMTPUTF8"):
            connection.send("shop@example.com", ["ada@example.org"], data)
        connection.send("shop@example.com", ["ada@example.org"], message_bytes(build_email(
            {"from": "shop@example.com", "to": ["ada@example.org"], "subject": "ok"}, tenant_id="t",
            message_id="m2")))
        assert [m.rcpt_tos for m in server.wait_for_messages(1)] == [("ada@example.org",)]
