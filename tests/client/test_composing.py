"""From e-mail as applications hold it (.eml files, Django messages) to add-messages items; the Django backend
against a scripted server; report signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import pytest
from mail_proxy_client import ServerError
from mail_proxy_client.composing import message_from_django, message_from_eml
from mail_proxy_client.errors import MessagesRejected
from mail_proxy_client.reports import verify_signature

from tests.client.fake_api import FakeApi

HAVE_DJANGO = importlib.util.find_spec("django") is not None
needs_django = pytest.mark.skipif(not HAVE_DJANGO, reason="Django is not installed (pip install "
                                  "'mail-proxy-client[django]'); the mapping itself is tested without it")


def eml(*, html: bool = True, plain: bool = True, attachment: bool = True) -> bytes:
    message = EmailMessage()
    message["From"] = "Shop <shop@example.com>"
    message["To"] = "Ada <ada@example.org>, bob@example.org"
    message["Cc"] = "cc@example.org"
    message["Subject"] = "Ünïcode subject"
    message["Message-ID"] = "<given@example.com>"
    message["Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    message["X-Campaign"] = "spring"
    if plain:
        message.set_content("plain body\n")
    if html:
        if plain:
            message.add_alternative("<p>html body</p>", subtype="html")
        else:
            message.set_content("<p>html body</p>", subtype="html")
    if attachment:
        message.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="report.pdf")
    return message.as_bytes()


def test_an_eml_file_keeps_addresses_subject_bodies_and_attachments() -> None:
    composed = message_from_eml(eml(), account_id="main", message_id="m1")
    message = composed.message
    assert message["id"] == "m1" and message["account_id"] == "main"
    assert message["from"] == "Shop <shop@example.com>"
    assert message["to"] == ["Ada <ada@example.org>", "bob@example.org"] and message["cc"] == ["cc@example.org"]
    assert message["subject"] == "Ünïcode subject"
    assert message["body"] == "plain body\n" and message["html_body"] == "<p>html body</p>\n"
    assert message["attachments"] == [{"filename": "report.pdf", "fetch_mode": "base64", "mime_type":
                                       "application/pdf",
                                       "storage_path": base64.b64encode(b"%PDF-1.4 tiny").decode()}]
    assert message["message_id"] == "<given@example.com>" and composed.warnings == []


def test_an_eml_copies_x_headers_and_its_date_but_never_the_ones_the_proxy_sets() -> None:
    message = message_from_eml(eml(), account_id="main").message
    assert message["headers"] == {"Date": "Mon, 01 Jan 2024 00:00:00 +0000", "X-Campaign": "spring"}
    assert message["id"].startswith("eml-")


def test_an_html_only_eml_is_sent_as_html() -> None:
    message = message_from_eml(eml(plain=False, attachment=False), account_id="main").message
    assert message["content_type"] == "html" and message["body"] == "<p>html body</p>\n"
    assert "html_body" not in message and "attachments" not in message


def test_an_eml_without_a_text_body_is_flagged() -> None:
    composed = message_from_eml(eml(plain=False, html=False), account_id="main")
    assert composed.warnings and "body" in composed.warnings[0]


def stand_in_django_message(**overrides: Any) -> SimpleNamespace:
    """The attributes Django's EmailMultiAlternatives has, without Django."""
    fields: dict[str, Any] = dict(
        subject="Order 7", body="plain", from_email="shop@example.com", to=["ada@example.org"], cc=[],
        bcc=["audit@example.com"], reply_to=["help@example.com"], extra_headers={"X-Order": "7"},
        content_subtype="plain", alternatives=[("<p>html</p>", "text/html")],
        attachments=[("invoice.csv", "a,b\n", "text/csv"), ("blob.bin", b"\x00\x01", None)])
    fields.update(overrides)
    message = SimpleNamespace(**fields)
    message.recipients = lambda: [*message.to, *message.cc, *message.bcc]
    return message


def test_a_django_message_maps_html_alternative_and_base64_attachments() -> None:
    message = message_from_django(stand_in_django_message(), account_id="main", priority="high").message
    assert message["id"].startswith("django-") and len(message["id"]) <= 128
    assert message["from"] == "shop@example.com" and message["to"] == ["ada@example.org"]
    assert message["bcc"] == ["audit@example.com"] and message["reply_to"] == "help@example.com"
    assert message["body"] == "plain" and message["html_body"] == "<p>html</p>"
    assert message["headers"] == {"X-Order": "7"} and message["priority"] == "high"
    assert message["attachments"] == [
        {"filename": "invoice.csv", "storage_path": base64.b64encode(b"a,b\n").decode(), "fetch_mode": "base64",
         "mime_type": "text/csv"},
        {"filename": "blob.bin", "storage_path": "AAE=", "fetch_mode": "base64",
         "mime_type": "application/octet-stream"},
    ]


def test_a_django_html_message_is_sent_as_html() -> None:
    message = message_from_django(stand_in_django_message(content_subtype="html", alternatives=[]),
                                  account_id="main").message
    assert message["content_type"] == "html" and "html_body" not in message


def test_a_django_message_can_carry_its_own_proxy_id_and_batch() -> None:
    original = stand_in_django_message(mail_proxy_id="order-7-confirmation", mail_proxy_batch_code="orders")
    message = message_from_django(original, account_id="main").message
    assert message["id"] == "order-7-confirmation" and message["batch_code"] == "orders"


def test_each_django_message_gets_a_new_id() -> None:
    original = stand_in_django_message()
    first = message_from_django(original, account_id="main").message["id"]
    assert first != message_from_django(original, account_id="main").message["id"]


# ------------------------------------------------------------------------------------------ Django backend


def backend(api: FakeApi, **options: Any) -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL="web@example.com", EMAIL_BACKEND="mail_proxy_client.django.EmailBackend")
    from django.core.mail import get_connection

    return get_connection("mail_proxy_client.django.EmailBackend", url=api.url, token="tenant-token",
                          account="main", retries=0, **options)


def django_message(to: str = "ada@example.org", connection: Any = None) -> Any:
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives("Hi", "plain", "shop@example.com", [to], connection=connection)
    message.attach_alternative("<b>hi</b>", "text/html")
    message.attach("notes.txt", "hello", "text/plain")
    return message


@needs_django
def test_the_django_backend_submits_every_message_in_one_call(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "queued": 2, "rejected": []})
    connection = backend(fake_api)
    sent = connection.send_messages([django_message(), django_message("bob@example.org")])
    request = fake_api.requests[0]
    assert sent == 2 and len(fake_api.requests) == 1
    assert request.path == "/commands/add-messages" and request.headers["x-api-token"] == "tenant-token"
    assert request.headers["idempotency-key"]
    first = request.json()["messages"][0]
    assert first["html_body"] == "<b>hi</b>" and first["account_id"] == "main"
    assert first["attachments"][0] == {"filename": "notes.txt", "storage_path": base64.b64encode(b"hello").decode(),
                                       "fetch_mode": "base64", "mime_type": "text/plain"}


@needs_django
def test_the_django_backend_raises_on_a_rejected_message(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "queued": 0, "rejected": [{"id": "x", "reason": "to: not an address"}]})
    with pytest.raises(MessagesRejected) as raised:
        backend(fake_api).send_messages([django_message()])
    assert raised.value.rejected == [{"id": "x", "reason": "to: not an address"}] and raised.value.queued == 0


@needs_django
def test_fail_silently_returns_what_was_queued_instead_of_raising(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "queued": 0, "rejected": [{"id": "x", "reason": "bad"}]})
    assert backend(fake_api, fail_silently=True).send_messages([django_message()]) == 0
    fake_api.answer(500, {"detail": "down"})
    assert backend(fake_api, fail_silently=True).send_messages([django_message()]) == 0


@needs_django
def test_without_fail_silently_a_proxy_error_is_raised(fake_api: FakeApi) -> None:
    fake_api.answer(500, {"detail": "down"})
    with pytest.raises(ServerError):
        backend(fake_api).send_messages([django_message()])


@needs_django
def test_the_django_backend_names_missing_settings() -> None:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL="web@example.com")
    from mail_proxy_client.django import EmailBackend

    with pytest.raises(ImproperlyConfigured, match="MAIL_PROXY_TOKEN, MAIL_PROXY_ACCOUNT"):
        EmailBackend(url="http://127.0.0.1:1")


@needs_django
def test_a_message_without_recipients_is_not_submitted(fake_api: FakeApi) -> None:
    message = django_message()
    message.to = []
    assert backend(fake_api).send_messages([message]) == 0 and fake_api.requests == []


# ------------------------------------------------------------------------------------------ report signatures


def sign(secret: str, moment: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()


def test_a_report_signature_is_checked_against_the_raw_body_and_the_time() -> None:
    body, secret, now = b'{"delivery_report":[]}', "whsec_test", 1_800_000_000
    header = f"t={now},v1={sign('old', now, body)},v1={sign(secret, now, body)}"
    assert verify_signature(header, body, secret, now=now + 10)
    assert not verify_signature(header, body + b" ", secret, now=now)
    assert not verify_signature(header, body, "other", now=now)
    assert not verify_signature(header, body, secret, now=now + 301)
    assert not verify_signature(None, body, secret)
