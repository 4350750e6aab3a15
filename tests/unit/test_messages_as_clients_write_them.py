"""Messages as Django and mail clients write them (issue 16): recipients only in Cc or Bcc, international
addresses, inline images, forwarded messages, the application's Date and Sender. The API's model
(``MessageIn``) and the build (``mime``) must agree: what one accepts, the other can send."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mail_proxy.domain.message_models import MessageIn, describe_validation_error
from mail_proxy.mail.addresses import AddressError, check_addr_spec, parse_mailbox
from mail_proxy.mail.mime import build_email, message_bytes
from mail_proxy.mail.mime_addresses import envelope_recipients, envelope_sender
from mail_proxy.mail.mime_bodies import FetchedAttachment
from mail_proxy.mail.mime_headers import MalformedMessageError

BASE: dict[str, Any] = {"id": "m1", "account_id": "smtp1", "from": "shop@example.com", "to": ["ada@example.org"],
                        "subject": "Hi"}


def accepted(**fields: Any) -> dict[str, Any]:
    return MessageIn.model_validate({**BASE, **fields}).payload()


def rejection(**fields: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        MessageIn.model_validate({**BASE, **fields})
    return describe_validation_error(raised.value)


def wire(payload: dict[str, Any], attachments: list[FetchedAttachment] | None = None) -> EmailMessage:
    built = build_email(payload, tenant_id="t", message_id="m1", attachments=attachments or [])
    return email.message_from_bytes(message_bytes(built), policy=email.policy.default)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- recipients


@pytest.mark.parametrize("field", ["cc", "bcc"])
def test_a_message_with_recipients_only_in_cc_or_bcc_is_accepted(field: str) -> None:
    payload = accepted(to=[], **{field: ["x@example.org"]})
    assert "to" not in payload and payload[field] == ["x@example.org"]
    assert envelope_recipients(payload) == ["x@example.org"]


def test_a_message_without_any_recipient_names_to_cc_and_bcc() -> None:
    assert "at least one recipient is required in to, cc or bcc" in rejection(to=[], cc=[], bcc=None)


def test_a_message_without_a_to_field_at_all_but_a_bcc_is_accepted() -> None:
    fields = {k: v for k, v in BASE.items() if k != "to"}
    assert MessageIn.model_validate({**fields, "bcc": "x@example.org"}).bcc == ["x@example.org"]


# ------------------------------------------------------------------------------------------------ addresses


def test_an_international_domain_is_accepted_and_kept_idna_encoded() -> None:
    payload = accepted(to=["Jürgen <user@exämple.org>"], **{"from": "shop@bücher.example"})
    assert payload["to"] == ["=?utf-8?q?J=C3=BCrgen?= <user@xn--exmple-cua.org>"]
    assert envelope_sender(payload) == "shop@xn--bcher-kva.example"
    assert envelope_recipients(payload) == ["user@xn--exmple-cua.org"]
    msg = wire(payload)
    assert msg["To"].addresses[0].addr_spec == "user@xn--exmple-cua.org"


def test_a_utf8_local_part_is_accepted_and_written_as_utf8_headers() -> None:
    payload = accepted(to=["jürgen@exämple.org"])
    assert payload["to"] == ["jürgen@xn--exmple-cua.org"]
    raw = message_bytes(build_email(payload, tenant_id="t", message_id="m1"))
    assert "To: jürgen@xn--exmple-cua.org\r\n".encode() in raw


@pytest.mark.parametrize("address", ["a@exämple", "a@-exämple.org", "a@ex\u00adample..org", "jü rgen@example.org",
                                     "a@" + "ä" * 70 + ".org", "ü" * 33 + "@example.org"])
def test_an_address_idna_cannot_encode_or_too_long_is_rejected(address: str) -> None:
    with pytest.raises(AddressError):
        check_addr_spec(address, field="to")


ADDRESS_TEXT = st.lists(st.sampled_from([*"ab.-@ü_+ ä\"<>,", "xn--", "ß", "exämple.org", "\u00ad"]),
                        min_size=1, max_size=16).map("".join)


@settings(max_examples=300, deadline=None)
@given(address=ADDRESS_TEXT)
@example("jü@exämple.org")
@example("\"a b\"@example.org")
@example("ß@ß.ß")
def test_an_address_the_api_accepts_is_one_the_sender_can_send(address: str) -> None:
    try:
        payload = accepted(to=[address])
    except ValidationError:
        return
    try:
        recipients = envelope_recipients(payload)
        build_email(payload, tenant_id="t", message_id="m1")
    except MalformedMessageError as exc:
        pytest.fail(f"{address!r} accepted by the API but not buildable: {exc}")
    assert all(r.rpartition("@")[2].isascii() for r in recipients)


@settings(max_examples=200, deadline=None)
@given(address=ADDRESS_TEXT)
def test_a_sender_mailbox_the_api_accepts_is_one_the_build_accepts(address: str) -> None:
    try:
        mailbox = parse_mailbox(address, field="from")
    except AddressError:
        return
    build_email({**BASE, "from": mailbox}, tenant_id="t", message_id="m1")


# ------------------------------------------------------------------------------------------ inline images


def test_content_id_is_accepted_with_or_without_angle_brackets() -> None:
    payload = accepted(attachments=[{"filename": "logo.png", "storage_path": "iVBO", "content_id": "<logo@x>"},
                                    {"filename": "b.png", "storage_path": "iVBO", "content_id": "b"}])
    assert [a["content_id"] for a in payload["attachments"]] == ["logo@x", "b"]


@pytest.mark.parametrize("content_id", ["with space", "a<b", "", "<>", "é"])
def test_a_content_id_that_cannot_be_a_header_is_rejected(content_id: str) -> None:
    assert "content_id" in rejection(attachments=[{"filename": "a.png", "storage_path": "x",
                                                   "content_id": content_id}])


def test_disposition_is_inline_or_attachment() -> None:
    assert "disposition" in rejection(attachments=[{"filename": "a", "storage_path": "x", "disposition": "form"}])


def test_an_inline_image_goes_with_the_html_into_multipart_related() -> None:
    payload = accepted(content_type="html", body='<img src="cid:logo">')
    msg = wire(payload, [FetchedAttachment("logo.png", "image/png", b"PNG", "logo")])
    assert msg.get_content_type() == "multipart/related" and msg.get_param("type") == "text/html"
    html, image = msg.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo>" and image.get_content_disposition() == "inline"


def test_an_inline_part_without_an_html_body_is_an_attachment_that_keeps_its_content_id() -> None:
    msg = wire(accepted(body="plain"), [FetchedAttachment("logo.png", "image/png", b"PNG", "logo")])
    assert msg.get_content_type() == "multipart/mixed"
    assert [part["Content-ID"] for part in msg.iter_attachments()] == ["<logo>"]


def test_disposition_inline_without_content_id_is_kept() -> None:
    msg = wire(accepted(body="x"), [FetchedAttachment("a.png", "image/png", b"PNG", None, "inline")])
    [part] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert part.get_content_disposition() == "inline" and part["Content-ID"] is None


# --------------------------------------------------------------------------------------- message/rfc822


def test_a_forwarded_ascii_message_is_7bit_with_its_name() -> None:
    inner = b"Subject: old\n\nhello\n"
    msg = wire(accepted(), [FetchedAttachment("old.eml", "message/rfc822", inner)])
    [part] = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    assert part["Content-Transfer-Encoding"] == "7bit" and part.get_filename() == "old.eml"
    assert part.get_payload(0)["Subject"] == "old"


def test_a_forwarded_message_with_a_line_too_long_for_smtp_is_a_clear_error() -> None:
    inner = b"Subject: old\n\n" + b"x" * 1200 + b"\n"
    with pytest.raises(MalformedMessageError, match=r"message/rfc822.*998"):
        build_email(accepted(), tenant_id="t", message_id="m1",
                    attachments=[FetchedAttachment("old.eml", "message/rfc822", inner)])


# ------------------------------------------------------------------------------------------ Date, Sender


def test_date_and_sender_headers_are_carried_not_dropped() -> None:
    payload = accepted(headers={"date": "Mon, 01 Jan 2024 10:00:00 +0100", "Sender": "Ops <ops@example.com>"})
    msg = wire(payload)
    assert msg["Date"] == "Mon, 01 Jan 2024 10:00:00 +0100" and msg["Sender"] == "Ops <ops@example.com>"
    assert len(msg.get_all("Date")) == 1


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Date": "yesterday"}, "RFC 5322 date"),
    ({"Date": "Mon, 01 Jan 2024 10:00:00"}, "time zone"),  # no zone: ambiguous
    ({"Sender": "not an address"}, "Sender"),
    ({"Sender": "a@example.com, b@example.com"}, "Sender"),
    ({"Date": "Mon, 01 Jan 2024 10:00:00 +0000", "DATE": "Mon, 01 Jan 2024 10:00:00 +0000"}, "once"),
])
def test_an_invalid_date_or_sender_is_rejected_at_submission(headers: dict[str, str], reason: str) -> None:
    assert reason in rejection(headers=headers)


def test_a_date_in_utc_with_its_local_zone_unknown_is_carried() -> None:
    """RFC 5322 3.3's -0000, which Django's own formatdate() writes by default."""
    assert wire(accepted(headers={"Date": "Mon, 01 Jan 2024 10:00:00 -0000"}))["Date"] == \
        "Mon, 01 Jan 2024 10:00:00 +0000"


def test_the_proxy_still_sets_date_when_the_application_gives_none() -> None:
    assert wire(accepted())["Date"]
