"""The outgoing email built from a stored payload: headers the proxy guarantees, the envelope, the body
structure, encodings, and what makes a payload malformed."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from mail_proxy.mail.mime import build_email, message_bytes
from mail_proxy.mail.mime_addresses import envelope_recipients, envelope_sender, parse_mailboxes
from mail_proxy.mail.mime_bodies import FetchedAttachment
from mail_proxy.mail.mime_headers import MalformedMessageError

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "from": "Shop <noreply@shop.example.com>",
        "to": ["jo@example.com"],
        "subject": "Your order",
        "body": "Hello Jo\n",
    }
    base.update(fields)
    return base


def build(fields: dict[str, Any], **kwargs: Any) -> EmailMessage:
    return build_email(fields, tenant_id="acme", message_id="msg-1", now=NOW, **kwargs)


def sent(fields: dict[str, Any], **kwargs: Any) -> EmailMessage:
    """What a receiving mail client sees: the bytes on the wire, parsed again."""
    raw = message_bytes(build(fields, **kwargs))
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text(part: Any) -> str:
    """A text part's content with the wire's CRLF line ends read back as newlines."""
    return str(part.get_content()).replace("\r\n", "\n")


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- headers the proxy guarantees ---------------------------------------------------------------


def test_every_message_gets_a_date_from_now_and_a_message_id_at_the_sender_domain() -> None:
    msg = sent(payload())

    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example\.com>", msg["Message-ID"])


def test_generated_message_ids_differ_between_messages() -> None:
    first = build_email(payload(), tenant_id="acme", message_id="msg-1", created_ms=1, now=NOW)
    second = build_email(payload(), tenant_id="acme", message_id="msg-2", created_ms=1, now=NOW)
    again = build_email(payload(), tenant_id="acme", message_id="msg-1", created_ms=2, now=NOW)

    assert len({first["Message-ID"], second["Message-ID"], again["Message-ID"]}) == 3


def test_a_retried_message_keeps_its_generated_message_id() -> None:
    attempts = [build_email(payload(), tenant_id="acme", message_id="msg-1", created_ms=1700000000000,
                            now=NOW + timedelta(minutes=n)) for n in (0, 5, 60)]

    assert len({msg["Message-ID"] for msg in attempts}) == 1


def test_a_generated_message_id_is_at_the_envelope_senders_domain() -> None:
    msg = build(payload(return_path="bounces@returns.example.net"))

    assert msg["Message-ID"].endswith("@returns.example.net>")


def test_date_keeps_the_offset_of_an_aware_now_and_takes_a_naive_now_as_utc() -> None:
    cet = datetime(2025, 3, 4, 6, 6, 7, tzinfo=timezone(timedelta(hours=1)))
    aware = build_email(payload(), tenant_id="acme", message_id="m", now=cet)
    naive = build_email(payload(), tenant_id="acme", message_id="m", now=NOW.replace(tzinfo=None))

    assert aware["Date"] == "Tue, 04 Mar 2025 06:06:07 +0100"
    assert parsedate_to_datetime(naive["Date"]) == NOW


@pytest.mark.parametrize("given", ["order-77@shop.example.com", "<order-77@shop.example.com>"])
def test_given_message_id_is_kept_in_angle_brackets(given: str) -> None:
    assert sent(payload(message_id=given))["Message-ID"] == "<order-77@shop.example.com>"


@pytest.mark.parametrize("given", ["no-at-sign", "two words@x.org", "<a@b>>"])
def test_given_message_id_that_is_not_left_at_right_is_malformed(given: str) -> None:
    with pytest.raises(MalformedMessageError, match="message_id"):
        build(payload(message_id=given))


def test_x_mail_proxy_id_is_tenant_slash_proxy_message_id() -> None:
    assert sent(payload())["X-Mail-Proxy-ID"] == "acme/msg-1"


def test_the_senders_tag_is_carried_next_to_the_proxy_id() -> None:
    tag = "a" * 32
    assert sent(payload(), proxy_tag=tag)["X-Mail-Proxy-Tag"] == tag
    assert sent(payload())["X-Mail-Proxy-Tag"] is None


def test_bcc_is_in_the_envelope_but_nowhere_in_the_message() -> None:
    fields = payload(bcc=["hidden@example.org"])

    raw = message_bytes(build(fields))

    assert "hidden@example.org" in envelope_recipients(fields)
    assert b"hidden@example.org" not in raw
    assert b"\r\nBcc:" not in header_block(raw)


def test_reply_to_header_is_set_from_its_field() -> None:
    assert sent(payload(reply_to="Support <help@shop.example.com>"))["Reply-To"] == ("Support <help@shop.example.com>")


def test_to_and_cc_headers_list_every_address() -> None:
    msg = sent(payload(to="a@example.com, B <b@example.com>", cc=["c@example.com"]))

    assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.com", "b@example.com"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["c@example.com"]


# --- custom headers -------------------------------------------------------------------------------


def test_custom_header_is_added() -> None:
    msg = sent(payload(headers={"X-Campaign": "spring-sale", "List-Unsubscribe": "<mailto:u@shop.example.com>"}))

    assert msg["X-Campaign"] == "spring-sale"
    assert msg["List-Unsubscribe"] == "<mailto:u@shop.example.com>"


@pytest.mark.parametrize(
    "name", ["From", "to", "Bcc", "Message-ID", "X-Mail-Proxy-ID", "X-Mail-Proxy-Tag", "Subject", "Content-Type",
             "MIME-Version"]
)
def test_custom_header_overriding_a_proxy_or_field_header_is_rejected(name: str) -> None:
    with pytest.raises(MalformedMessageError, match="cannot be overridden"):
        build(payload(headers={name: "evil@attacker.example"}))


def test_custom_header_with_an_invalid_name_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="not a valid header name"):
        build(payload(headers={"X Bad: name": "v"}))


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hi\r\nBcc: victim@example.org"},
        {"subject": "Hi\nthere"},
        {"headers": {"X-Note": "a\rb"}},
        {"to": ["jo@example.com\r\nBcc: victim@example.org"]},
        {"from": "Shop\n <noreply@shop.example.com>"},
        {"reply_to": "help@shop.example.com\r\n"},
    ],
    ids=["subject-crlf", "subject-lf", "custom-cr", "to-crlf", "from-lf", "reply-to-crlf"],
)
def test_cr_or_lf_in_a_header_value_is_malformed(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessageError, match="line break"):
        build(payload(**fields))


# --- envelope -------------------------------------------------------------------------------------


def test_return_path_is_the_envelope_sender() -> None:
    assert envelope_sender(payload(return_path="bounces+77@shop.example.com")) == "bounces+77@shop.example.com"


def test_envelope_sender_is_the_address_of_from_without_return_path() -> None:
    assert envelope_sender(payload()) == "noreply@shop.example.com"


def test_envelope_recipients_are_to_cc_bcc_deduplicated_case_insensitively_in_order() -> None:
    fields = payload(
        to=["Jo <Jo@Example.com>", "ann@example.com"],
        cc="jo@example.com, bob@example.com",
        bcc=["ANN@EXAMPLE.COM", "eve@example.com"],
    )

    assert envelope_recipients(fields) == ["Jo@Example.com", "ann@example.com", "bob@example.com", "eve@example.com"]


def test_international_domain_is_idna_encoded_for_the_envelope_and_headers() -> None:
    fields = payload(to=["Jürgen <j@bücher.de>"])

    assert envelope_recipients(fields) == ["j@xn--bcher-kva.de"]
    assert sent(fields)["To"].addresses[0].domain == "xn--bcher-kva.de"


@pytest.mark.parametrize(
    ("written", "display_name"),
    [
        ("jo@example.com (Jo Smith)", "Jo Smith"),
        ('"Smith, Jo" <jo@example.com>', "Smith, Jo"),
        ('Jo "Q" Smith <jo@example.com>', "Jo Q Smith"),
        ("Jo (Sales) <jo@example.com>", "Jo (Sales)"),
        ("Jo <jo@example.com> (work)", "Jo"),
        ("<jo@example.com>", ""),
    ],
)
def test_display_name_forms_in_use_are_accepted(written: str, display_name: str) -> None:
    assert parse_mailboxes(written, field="to") == [(display_name, "jo@example.com")]


# --- malformed payloads ---------------------------------------------------------------------------


def test_no_recipients_is_malformed() -> None:
    fields = payload(to=[], cc=None, bcc=[])

    with pytest.raises(MalformedMessageError, match="no recipients"):
        build(fields)
    with pytest.raises(MalformedMessageError, match="no recipients"):
        envelope_recipients(fields)


@pytest.mark.parametrize(
    "address",
    ["not an address", "jo@", "@example.com", "jo@@example.com", "jo@exa mple.com", "Jo <jo@example.com"],
)
def test_unparsable_recipient_is_malformed(address: str) -> None:
    with pytest.raises(MalformedMessageError, match="to"):
        build(payload(to=[address]))


def test_from_with_two_addresses_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="exactly one"):
        build(payload(**{"from": "a@example.com, b@example.com"}))


def test_unknown_content_type_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="content_type"):
        build(payload(content_type="markdown"))


def test_html_body_alongside_an_html_body_type_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="html_body"):
        build(payload(content_type="html", html_body="<p>x</p>"))


def test_malformed_message_error_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError) as caught:
        build(payload(to=[]))

    assert isinstance(caught.value, MalformedMessageError)
    assert caught.value.reason == str(caught.value)


# --- bodies and encodings -------------------------------------------------------------------------


def test_plain_body_is_a_single_text_plain_part() -> None:
    msg = sent(payload(body="Hello Jo\nSee you\n"))

    assert msg.get_content_type() == "text/plain"
    assert not msg.is_multipart()
    assert text(msg) == "Hello Jo\nSee you\n"


def test_html_content_type_is_a_single_text_html_part() -> None:
    msg = sent(payload(body="<p>Hello</p>\n", content_type="html"))

    assert msg.get_content_type() == "text/html"
    assert text(msg) == "<p>Hello</p>\n"


def test_body_with_html_body_is_multipart_alternative_plain_first() -> None:
    msg = sent(payload(body="Hello\n", html_body="<p>Hello</p>\n"))

    parts = list(msg.iter_parts())
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [text(part) for part in parts] == ["Hello\n", "<p>Hello</p>\n"]


def test_utf8_subject_round_trips_and_is_7bit_on_the_wire() -> None:
    subject = "Grüße aus Köln \u2013 注文の確認 " * 3

    raw = message_bytes(build(payload(subject=subject)))

    assert email.message_from_bytes(raw, policy=policy.default)["Subject"] == subject
    assert header_block(raw).isascii()


def test_utf8_display_name_round_trips() -> None:
    msg = sent(payload(**{"from": "Zoë Ünïcode <zoe@shop.example.com>"}))

    assert msg["From"].addresses[0].display_name == "Zoë Ünïcode"


def test_utf8_body_round_trips_in_a_7bit_transfer_encoding() -> None:
    body = "Grüße, Zoë!\n日本語のテキスト\n"

    raw = message_bytes(build(payload(body=body)))
    msg = email.message_from_bytes(raw, policy=policy.default)

    assert raw.isascii()
    assert msg["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert text(msg) == body


def test_message_bytes_use_crlf_and_keep_lines_short() -> None:
    raw = message_bytes(build(payload(subject="word " * 60, body="x" * 2000 + "\n")))

    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_attachments_become_named_parts_after_the_body() -> None:
    attachments = [
        FetchedAttachment("invoice.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ("résumé.txt", None, "plain ünïcode".encode()),
    ]

    msg = sent(payload(body="See attached\n"), attachments=attachments)

    parts = list(msg.iter_parts())
    assert msg.get_content_type() == "multipart/mixed"
    assert parts[0].get_content_type() == "text/plain"
    assert [(p.get_filename(), p.get_content_type(), p.get_content()) for p in parts[1:]] == [
        ("invoice.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ("résumé.txt", "application/octet-stream", "plain ünïcode".encode()),
    ]
