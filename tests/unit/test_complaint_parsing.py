"""ARF feedback reports (RFC 5965) read as complaints; DSNs and ordinary mail are not complaints."""

from __future__ import annotations

from mail_proxy.mail.complaint_parser import parse_complaint
from mail_proxy.mail.inbound_mail import ProxyReference
from tests.fixtures import returned_mail


def test_a_feedback_report_names_the_message_the_recipient_and_the_reporter() -> None:
    complaint = parse_complaint(returned_mail.arf("acme", "m1", recipient="angry@example.org"))
    assert complaint is not None
    assert complaint.feedback_type == "abuse" and complaint.user_agent == "ExampleFBL/1.0"
    assert complaint.reference == ProxyReference("acme", "m1")
    assert complaint.recipients == ("angry@example.org",)
    assert complaint.reporting == "mx.feedback.example.net"


def test_returned_headers_only_are_enough_to_find_the_message() -> None:
    complaint = parse_complaint(returned_mail.arf("acme", "m7", returned="headers"))
    assert complaint is not None and complaint.reference == ProxyReference("acme", "m7")


def test_without_the_proxy_header_the_original_message_id_is_kept_for_matching() -> None:
    complaint = parse_complaint(returned_mail.arf(None, None, message_id_header="<abc@example.com>"))
    assert complaint is not None
    assert complaint.reference is None and complaint.original_message_id == "<abc@example.com>"


def test_a_redacted_recipient_falls_back_to_the_originals_to_header() -> None:
    complaint = parse_complaint(returned_mail.arf("acme", "m1", recipient=None, to="someone@example.org"))
    assert complaint is not None and complaint.recipients == ("someone@example.org",)


def test_a_not_spam_report_is_no_complaint() -> None:
    assert parse_complaint(returned_mail.arf("acme", "m1", feedback_type="not-spam")) is None


def test_a_dsn_and_ordinary_mail_are_no_complaints() -> None:
    assert parse_complaint(returned_mail.dsn("acme", "m1")) is None
    assert parse_complaint(returned_mail.unrelated_mail()) is None
    assert parse_complaint(returned_mail.auto_reply("acme", "m1")) is None
