"""Bounce and PEC receipt parsing (pure): what each kind of returned mail means."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mail_proxy.mail import inbound_mail
from mail_proxy.mail.bounce_parser import parse_bounce
from mail_proxy.mail.inbound_mail import ProxyReference, UnreadableMail, find_reference, parse
from mail_proxy.mail.pec_parser import parse_pec_receipt, receipt_kind
from tests.fixtures import returned_mail


def test_dsn_failed_5_1_1_is_a_hard_bounce_naming_the_original_message() -> None:
    bounce = parse_bounce(returned_mail.dsn("acme", "order-1"))
    assert bounce is not None and bounce.standard
    assert bounce.bounce_type == "hard" and bounce.code == "5.1.1"
    assert "User unknown" in bounce.reason and bounce.reason.startswith("550 5.1.1")
    assert bounce.reference == ProxyReference("acme", "order-1")
    assert bounce.hard_recipients == ("rcpt@example.org",)
    assert bounce.recipients[0].smtp_code == "550"


def test_dsn_delayed_4_x_x_is_a_soft_bounce_without_hard_recipients() -> None:
    bounce = parse_bounce(returned_mail.dsn("acme", "m2", action="delayed", status="4.2.2",
                                            diagnostic="smtp; 452 4.2.2 Mailbox full"))
    assert bounce is not None
    assert (bounce.bounce_type, bounce.code, bounce.hard_recipients) == ("soft", "4.2.2", ())
    assert "Mailbox full" in bounce.reason


def test_dsn_failed_with_a_4_x_x_status_is_soft() -> None:
    bounce = parse_bounce(returned_mail.dsn("acme", "m3", status="4.4.7", diagnostic=""))
    assert bounce is not None and bounce.bounce_type == "soft" and bounce.code == "4.4.7"


def test_dsn_with_only_the_returned_headers_still_names_the_message() -> None:
    bounce = parse_bounce(returned_mail.dsn("acme", "m4", returned="headers"))
    assert bounce is not None and bounce.reference == ProxyReference("acme", "m4")


def test_a_delivered_notification_is_not_a_bounce() -> None:
    assert parse_bounce(returned_mail.dsn("acme", "m5", action="delivered", status="2.0.0", diagnostic="")) is None


def test_qmail_style_failure_notice_is_a_hard_bounce_from_the_code_in_its_text() -> None:
    bounce = parse_bounce(returned_mail.plain_bounce("acme", "m6", recipient="gone@example.org"))
    assert bounce is not None and not bounce.standard
    assert bounce.bounce_type == "hard" and bounce.code == "5.1.1"
    assert bounce.reference == ProxyReference("acme", "m6")
    assert "gone@example.org" in bounce.hard_recipients


def test_failure_notice_with_a_4xx_code_is_soft() -> None:
    bounce = parse_bounce(returned_mail.plain_bounce("acme", "m7", text="421 Service not available, try later"))
    assert bounce is not None and bounce.bounce_type == "soft" and bounce.code == "421"


def test_ordinary_mail_and_auto_replies_are_not_bounces() -> None:
    assert parse_bounce(returned_mail.unrelated_mail()) is None
    assert parse_bounce(returned_mail.auto_reply("acme", "m8")) is None


def test_garbage_is_not_a_bounce() -> None:
    assert parse_bounce(b"\x00\xff not a mail at all \r\n\r\n\x80") is None


def test_reference_in_a_quoted_body_line_is_found() -> None:
    msg = parse(b"Subject: x\r\n\r\nsomething\r\n> X-Mail-Proxy-ID: t1/abc-123\r\n")
    assert find_reference(msg) == ProxyReference("t1", "abc-123")


@pytest.mark.parametrize(("kind", "event_type", "receipt"), [
    ("accettazione", "pec_acceptance", "accettazione"),
    ("presa-in-carico", "pec_acceptance", "presa in carico"),
    ("avvenuta-consegna", "pec_delivery", "avvenuta consegna"),
    ("mancata-consegna", "pec_error", "mancata consegna"),
    ("errore-consegna", "pec_error", "errore consegna"),
    ("non-accettazione", "pec_error", "non accettazione"),
])
@pytest.mark.parametrize("by_header", [True, False])
def test_each_pec_receipt_kind_by_header_or_subject(kind: str, event_type: str, receipt: str,
                                                    by_header: bool) -> None:
    raw = returned_mail.pec_receipt(kind, original_message_id="<orig-1@example.com>", header=by_header,
                                    error="casella piena")
    parsed = parse_pec_receipt(raw)
    assert parsed is not None
    assert (parsed.event_type, parsed.receipt) == (event_type, receipt)
    assert parsed.original_message_id == "<orig-1@example.com>"
    assert parsed.recipient == "destinatario@pec.example.it"
    assert parsed.timestamp == 1736154000
    if event_type == "pec_error":
        assert parsed.error == "casella piena" and parsed.description == f"PEC {receipt}: casella piena"
    else:
        assert parsed.error is None and parsed.description == f"PEC {receipt}"


def test_pec_delivery_receipt_with_the_original_attached_names_it() -> None:
    parsed = parse_pec_receipt(returned_mail.pec_receipt("avvenuta-consegna", tenant_id="acme", message_id="p1"))
    assert parsed is not None and parsed.reference == ProxyReference("acme", "p1")


def test_non_receipts_are_not_pec_receipts() -> None:
    assert parse_pec_receipt(returned_mail.unrelated_mail()) is None
    assert receipt_kind("preavviso-errore-consegna", "PREAVVISO DI MANCATA CONSEGNA: x") is None
    assert receipt_kind("", "POSTA CERTIFICATA: Fattura 12") is None
    assert receipt_kind("", "Consegna: merce in arrivo") is None  # providers write receipts in capitals


# ------------------------------------------------------------------------------------------ hostile structure


@pytest.mark.parametrize("kind", ["digest", "multipart", "message"])
@pytest.mark.parametrize("reader", [parse_bounce, parse_pec_receipt])
def test_a_mail_of_1200_nested_parts_is_refused_not_a_recursion_error(kind: str,
                                                                      reader: Callable[[bytes], object]) -> None:
    raw = returned_mail.deeply_nested(1200, kind=kind)
    with pytest.raises(UnreadableMail, match="multipart or message parts"):
        reader(raw)


@pytest.mark.parametrize("line_ending", ["\r\n", "\n", "\r"])
def test_the_nesting_bound_holds_for_folded_headers_and_any_line_ending(line_ending: str) -> None:
    raw = returned_mail.deeply_nested(1200, kind="multipart", line_ending=line_ending, folded=True)
    with pytest.raises(UnreadableMail):
        parse(raw)


@pytest.mark.parametrize("kind", ["multipart", "message"])
def test_mime_depth_is_bounded_even_with_few_declared_parts(kind: str) -> None:
    parse(returned_mail.deeply_nested(inbound_mail.MAX_MIME_DEPTH - 1, kind=kind))
    with pytest.raises(UnreadableMail, match=f"deeper than {inbound_mail.MAX_MIME_DEPTH} levels"):
        parse(returned_mail.deeply_nested(inbound_mail.MAX_MIME_DEPTH, kind=kind))


def test_a_mail_with_too_many_parts_is_refused() -> None:
    parse(returned_mail.many_parts(inbound_mail.MAX_MIME_PARTS - 1))
    with pytest.raises(UnreadableMail, match=f"more than {inbound_mail.MAX_MIME_PARTS} MIME parts"):
        parse(returned_mail.many_parts(inbound_mail.MAX_MIME_PARTS))


def test_a_bounce_inside_the_bounds_is_still_read_through_every_part() -> None:
    raw = returned_mail.dsn("acme", "m1")
    assert [p.get_content_type() for p in inbound_mail.walk(parse(raw))] == [
        "multipart/report", "text/plain", "message/delivery-status", "text/plain", "text/plain", "message/rfc822",
        "text/plain"]
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.reference == ProxyReference("acme", "m1")
