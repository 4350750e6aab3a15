"""Django 5.2's own mail API through the backend (issue 16 "Django users"): what Django sends, the backend
submits; what it cannot carry, it says. Also the command line's inline images."""

from __future__ import annotations

import base64
import importlib.util
import logging
from email.mime.image import MIMEImage
from pathlib import Path
from typing import Any

import pytest
from mail_proxy_client.composing import base64_attachment

from tests.client.conftest import Cli
from tests.client.fake_api import FakeApi

pytestmark = pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="Django is not installed")
PNG = b"\x89PNG\r\n\x1a\n-logo-"


def submitted(api: FakeApi, *messages: Any) -> list[dict[str, Any]]:
    """The add-messages items the backend sent for ``messages``."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL="web@example.com")
    from django.core.mail import get_connection

    api.answer(200, {"ok": True, "queued": len(messages), "rejected": []})
    connection = get_connection("mail_proxy_client.django.EmailBackend", url=api.url, token="tenant-token",
                                account="main", retries=0)
    assert connection.send_messages(list(messages)) == len(messages)
    return list(api.requests[-1].json()["messages"])


def mail(**options: Any) -> Any:
    from django.core.mail import EmailMultiAlternatives

    fields: dict[str, Any] = {"subject": "Hi", "body": "plain", "from_email": "shop@example.com",
                              "to": ["ada@example.org"], **options}
    return EmailMultiAlternatives(**fields)


def test_a_django_message_with_only_bcc_is_submitted(fake_api: FakeApi) -> None:
    [item] = submitted(fake_api, mail(to=[], bcc=["hidden@example.org"]))
    assert item["bcc"] == ["hidden@example.org"] and not item.get("to")


def test_an_international_address_is_passed_on_for_the_proxy_to_encode(fake_api: FakeApi) -> None:
    [item] = submitted(fake_api, mail(to=["user@exämple.org"]))
    assert item["to"] == ["user@exämple.org"]


def test_an_inline_image_keeps_its_content_id(fake_api: FakeApi) -> None:
    message = mail()
    message.attach_alternative('<img src="cid:logo">', "text/html")
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(image)
    [item] = submitted(fake_api, message)
    assert item["attachments"] == [{"filename": "logo.png", "storage_path": base64.b64encode(PNG).decode(),
                                    "fetch_mode": "base64", "mime_type": "image/png", "content_id": "logo"}]


def test_an_image_marked_attachment_but_with_a_content_id_says_so(fake_api: FakeApi) -> None:
    message = mail()
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "attachment", filename="logo.png")
    message.attach(image)
    [item] = submitted(fake_api, message)
    assert item["attachments"][0]["content_id"] == "logo" and item["attachments"][0]["disposition"] == "attachment"


def test_a_forwarded_django_message_is_attached_as_its_bytes_and_named_by_its_subject(fake_api: FakeApi) -> None:
    from django.core.mail import EmailMessage

    forwarded = EmailMessage("Question/1", "Grüße", "ada@example.org", ["shop@example.com"])
    message = mail()
    message.attach(None, forwarded, "message/rfc822")
    message.attach("given.eml", forwarded.message(), "message/rfc822")
    first, second = submitted(fake_api, message)[0]["attachments"]
    assert first["filename"] == "Question_1.eml" and second["filename"] == "given.eml"
    assert first["mime_type"] == second["mime_type"] == "message/rfc822"
    assert b"Subject: Question/1" in base64.b64decode(first["storage_path"])


def test_date_and_sender_headers_are_carried(fake_api: FakeApi) -> None:
    headers = {"Date": "Tue, 02 Jan 2024 09:30:00 +0000", "Sender": "ops@example.com", "X-Order": "1"}
    [item] = submitted(fake_api, mail(headers=headers))
    assert item["headers"] == headers


def test_headers_the_backend_cannot_carry_are_named_in_a_warning(fake_api: FakeApi,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    message = mail(headers={"To": "Undisclosed <list@example.org>", "MIME-Version": "1.0", "X-Ok": "1"})
    message.encoding = "iso-8859-1"
    with caplog.at_level(logging.WARNING, logger="mail_proxy_client.django"):
        [item] = submitted(fake_api, message)
    assert item["headers"] == {"X-Ok": "1"}
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "header To not carried" in warned and "header MIME-Version not carried" in warned
    assert "encoding iso-8859-1 not carried" in warned


def test_an_attachment_helper_strips_the_content_id_brackets() -> None:
    assert base64_attachment("a.png", b"x", content_id="<a@b>")["content_id"] == "a@b"


def test_the_command_line_sends_an_inline_image_and_a_message_with_only_bcc(cli: Cli, fake_api: FakeApi,
                                                                            tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    assert cli("profile", "add", "p", "--url", fake_api.url, "--token", "t0123456789abcdef").code == 0
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"ok": True, "queued": 1, "rejected": []})
    result = cli("p", "acme", "send", "--account", "main", "--from", "shop@example.com", "--bcc", "a@example.org",
                 "--subject", "Hi", "--body", "plain", "--html", '<img src="cid:brand">', "--inline",
                 f"brand={logo}", "--inline", str(logo))
    assert result.code == 0, result.output
    [item] = fake_api.requests[-1].json()["messages"]
    assert item["bcc"] == ["a@example.org"] and not item.get("to")
    assert [(a["filename"], a["content_id"]) for a in item["attachments"]] == [("logo.png", "brand"),
                                                                               ("logo.png", "logo.png")]
