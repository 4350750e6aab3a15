"""Complaint detection: ARF feedback reports (RFC 5965), as mailbox providers send them (pure).

A feedback report is ``multipart/report; report-type=feedback-report`` with a human-readable part, a
``message/feedback-report`` part (``Feedback-Type``, ``User-Agent``, ``Version``, ``Original-Rcpt-To``,
``Arrival-Date``...) and the original message or its headers as the third part. Any mail carrying a
``message/feedback-report`` part is read as one, even if its outer type is not quite right. A report of
type ``not-spam`` (RFC 6430: the recipient took it *out* of the spam folder) is no complaint.

The message a complaint is about is the ``X-Mail-Proxy-ID`` of the returned original (or its headers), as
for bounces; failing that, its ``Message-ID`` (``original_message_id``). Providers often redact the
recipient's address (RFC 6590); ``recipients`` then holds only what is left readable.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from mail_proxy.mail import inbound_mail
from mail_proxy.mail.inbound_mail import ProxyReference

FEEDBACK_PART_TYPE = "message/feedback-report"
NOT_COMPLAINTS = frozenset({"not-spam"})
MAX_FIELD_CHARS = 200


@dataclass(frozen=True)
class Complaint:
    feedback_type: str  # abuse, fraud, virus, other, auth-failure, dmarc...
    user_agent: str | None
    recipients: tuple[str, ...]  # Original-Rcpt-To, when not redacted
    arrival_date: str | None
    reporting: str | None  # Reporting-MTA, or the report's sender domain
    reference: ProxyReference | None
    original_message_id: str | None


def parse_complaint(raw: bytes) -> Complaint | None:
    """The complaint ``raw`` is, or None when it is no feedback report (or a ``not-spam`` one)."""
    msg = inbound_mail.parse(raw)
    fields = _feedback_fields(msg)
    if fields is None:
        return None
    feedback_type = _clip(inbound_mail.header(fields, "Feedback-Type")).lower() or "abuse"
    if feedback_type in NOT_COMPLAINTS:
        return None
    recipients: list[str] = []
    for value in fields.get_all("Original-Rcpt-To") or []:
        recipients.extend(inbound_mail.addresses_in(str(value).partition(";")[2] or str(value), limit=20))
    original = _original_headers(msg)
    original_message_id = _clip(inbound_mail.header(original, "Message-ID")) if original is not None else ""
    if not recipients and original is not None:
        recipients = inbound_mail.addresses_in(inbound_mail.header(original, "To"), limit=20)
    reporting = (_clip(inbound_mail.header(fields, "Reporting-MTA").partition(";")[2])
                 or _sender_domain(inbound_mail.header(msg, "From")))
    return Complaint(
        feedback_type=feedback_type,
        user_agent=_clip(inbound_mail.header(fields, "User-Agent")) or None,
        recipients=tuple(dict.fromkeys(recipients)),
        arrival_date=_clip(inbound_mail.header(fields, "Arrival-Date")) or None,
        reporting=reporting or None,
        reference=inbound_mail.find_reference(msg, top_level=False),
        original_message_id=original_message_id or None,
    )


def _feedback_fields(msg: Message) -> Message | None:
    """The fields of the first ``message/feedback-report`` part (parsed as headers however it was stored)."""
    for part in inbound_mail.walk(msg, into_returned=False):
        if part.get_content_type() != FEEDBACK_PART_TYPE:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            first = payload[0] if payload else None
            return first if isinstance(first, Message) else Message()
        return HeaderParser(policy=email.policy.compat32).parsestr(inbound_mail.part_text(part).strip() + "\n")
    return None


def _original_headers(msg: Message) -> Message | None:
    """The headers of the original message the report returns (the third part), if it returns one."""
    for part in inbound_mail.walk(msg, into_returned=False):
        ctype = part.get_content_type()
        if ctype in inbound_mail.RETURNED_MESSAGE_TYPES:
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(first, Message):
                return first
        elif ctype in inbound_mail.RETURNED_HEADER_TYPES:
            return email.message_from_string(inbound_mail.part_text(part), policy=email.policy.compat32)
    return None


def _sender_domain(value: str) -> str:
    found = inbound_mail.addresses_in(value, limit=1)
    return found[0].rpartition("@")[2].lower() if found else ""


def _clip(text: str) -> str:
    return " ".join(text.split())[:MAX_FIELD_CHARS]
