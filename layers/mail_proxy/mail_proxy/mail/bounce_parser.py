"""Bounce detection: RFC 3464 delivery status notifications and the common non-standard bounces (pure).

A DSN (``multipart/report; report-type=delivery-status``) is read per recipient: ``Action: failed`` or
``delayed``, ``Status`` 5.x.x (hard) or 4.x.x (soft), ``Diagnostic-Code`` as the reason. A recipient that
was delivered, relayed or expanded is not a bounce. Anything else counts as a bounce only when its
subject or sender says so (``Undelivered Mail Returned to Sender``, ``MAILER-DAEMON``...); then the SMTP
codes in its text decide hard or soft, and without a code the wording does (a missing code in a failure
notice is hard, as most servers mean it). Out-of-office and other automatic replies are not bounces.
The message a bounce is about is the ``X-Mail-Proxy-ID`` found by ``inbound_mail.find_reference``.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Literal

from mail_proxy.mail import inbound_mail
from mail_proxy.mail.inbound_mail import ProxyReference

BounceType = Literal["hard", "soft"]
MAX_REASON_CHARS = 500
STATUS_PART_TYPES = frozenset({"message/delivery-status", "text/delivery-status", "message/global-delivery-status"})
NOT_FAILED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?:^|[\s(\[:#=])([245][0-5]\d)(?=[\s\-.,;:)\]]|$)", re.MULTILINE)
_BOUNCE_SUBJECT = re.compile(
    r"(mail|message|delivery)\s+(delivery|failure|failed|returned|undeliverable|not delivered)"
    r"|undeliver(ed|able)|returned\s+(mail|to sender)|(returned|bounced)\s+mail|failure notice"
    r"|delivery status notification|non[- ]?delivery|could not be delivered|unzustellbar|mancata consegna"
    r"|rapport de non-remise|delivery (has )?failed|delivery delayed|warning: could not send",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail-daemon|maildelivery|mail delivery (sub)?system",
                            re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(r"out of (the )?office|automatic reply|auto(matic)?[- ]?reply|abwesenheit|"
                                 r"vacation|fuori sede|risposta automatica", re.IGNORECASE)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn't exist|not exist"
    r"|mailbox (is )?unavailable|invalid (recipient|address|mailbox)|recipient (address )?rejected"
    r"|address rejected|account (has been )?disabled|no mailbox|unrouteable|host not found|domain not found",
    re.IGNORECASE)
_SOFT_WORDS = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|insufficient storage|temporar|try again|delayed|deferred"
    r"|will (retry|continue)|still trying|not yet been delivered|greylist", re.IGNORECASE)


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a bounce reports on (``address`` None when the bounce does not name one)."""

    address: str | None
    bounce_type: BounceType
    status: str | None = None
    smtp_code: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True)
class Bounce:
    bounce_type: BounceType
    code: str | None
    reason: str
    recipients: tuple[FailedRecipient, ...]
    reference: ProxyReference | None
    standard: bool = False
    hard_recipients: tuple[str, ...] = field(default=())


def parse_bounce(raw: bytes) -> Bounce | None:
    """The bounce ``raw`` is, or None when it is no bounce (an ordinary mail, a reply, a success notice)."""
    msg = inbound_mail.parse(raw)
    blocks = _status_blocks(msg)
    if blocks:
        return _from_dsn(msg, blocks)
    if _looks_like_bounce(msg):
        return _from_text(msg)
    return None


# ------------------------------------------------------------------------------------------- standard DSN


def _status_blocks(msg: Message) -> list[Message]:
    """The per-recipient field groups of every delivery-status part (first group is per message)."""
    groups: list[Message] = []
    for part in inbound_mail.walk(msg, into_returned=False):
        if part.get_content_type() not in STATUS_PART_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            groups.extend(p for p in payload if isinstance(p, Message))
        else:
            text = inbound_mail.part_text(part)
            for chunk in re.split(r"\r?\n\s*\r?\n", text):
                if chunk.strip():
                    groups.append(email.message_from_string(chunk.strip() + "\n", policy=email.policy.compat32))
    return [g for g in groups if g.get("Action") or g.get("Final-Recipient") or g.get("Status")]


def _address_field(value: str) -> str | None:
    """``rfc822; a@b.c`` → ``a@b.c``."""
    found = inbound_mail.addresses_in(value.partition(";")[2] or value, limit=1)
    return found[0] if found else None


def _classify(action: str, status: str | None, smtp_code: str | None) -> BounceType | None:
    if action in NOT_FAILED_ACTIONS or (status or "").startswith("2"):
        return None
    if action == "delayed":
        return "soft"
    for code in (status, smtp_code):
        if code and code[0] in "45":
            return "hard" if code[0] == "5" else "soft"
    return "hard" if action == "failed" else None


def _from_dsn(msg: Message, blocks: list[Message]) -> Bounce | None:
    recipients: list[FailedRecipient] = []
    for block in blocks:
        action = inbound_mail.header(block, "Action").lower()
        status_match = _STATUS.search(inbound_mail.header(block, "Status"))
        status = ".".join(status_match.groups()) if status_match else None
        diagnostic_field = inbound_mail.header(block, "Diagnostic-Code")
        diagnostic = (diagnostic_field.partition(";")[2] if ";" in diagnostic_field else diagnostic_field).strip()
        code_match = _SMTP_CODE.search(diagnostic)
        smtp_code = code_match.group(1) if code_match else None
        if status is None and not (block.get("Final-Recipient") or block.get("Original-Recipient")):
            continue  # the per-message group
        kind = _classify(action, status, smtp_code)
        if kind is None:
            continue
        address = (_address_field(inbound_mail.header(block, "Final-Recipient"))
                   or _address_field(inbound_mail.header(block, "Original-Recipient")))
        recipients.append(FailedRecipient(address, kind, status, smtp_code, diagnostic or None))
    if not recipients:
        return None
    first = next((r for r in recipients if r.bounce_type == "hard"), recipients[0])
    reason = first.diagnostic or f"{inbound_mail.header(blocks[-1], 'Action') or 'failed'} {first.status or ''}"
    return Bounce(
        bounce_type=first.bounce_type,
        code=first.status or first.smtp_code,
        reason=_clip(reason),
        recipients=tuple(recipients),
        reference=inbound_mail.find_reference(msg),
        standard=True,
        hard_recipients=tuple(r.address for r in recipients if r.bounce_type == "hard" and r.address),
    )


# ------------------------------------------------------------------------------------------- heuristics


def _looks_like_bounce(msg: Message) -> bool:
    subject = inbound_mail.header(msg, "Subject")
    if _AUTO_REPLY_SUBJECT.search(subject):
        return False
    if inbound_mail.header(msg, "Auto-Submitted").lower().startswith("auto-replied"):
        return False
    sender = inbound_mail.header(msg, "From") + " " + inbound_mail.header(msg, "Return-Path")
    return bool(_BOUNCE_SUBJECT.search(subject) or _BOUNCE_SENDER.search(sender))


def _from_text(msg: Message) -> Bounce:
    text = inbound_mail.body_text(msg)
    status_match = _STATUS.search(text)
    status = ".".join(status_match.groups()) if status_match and status_match.group(1) != "2" else None
    code_match = next((m for m in _SMTP_CODE.finditer(text) if m.group(1)[0] in "45"), None)
    smtp_code = code_match.group(1) if code_match else None
    kind: BounceType
    evidence = status or smtp_code
    if evidence:
        kind = "hard" if evidence[0] == "5" else "soft"
    elif _SOFT_WORDS.search(text) or re.search(r"delay|warning", inbound_mail.header(msg, "Subject"), re.I):
        kind = "soft"
    else:
        kind = "hard"  # a failure notice that gives no code (or a "user unknown" wording)
    if not evidence and _HARD_WORDS.search(text):
        kind = "hard"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = " ".join(lines[:5]) or inbound_mail.header(msg, "Subject") or "bounce"
    senders = {a.casefold() for a in inbound_mail.addresses_in(inbound_mail.header(msg, "From"))}
    addresses = [a for a in inbound_mail.addresses_in(text[:4000]) if a.casefold() not in senders]
    recipients = tuple(FailedRecipient(a, kind, status, smtp_code, None) for a in addresses)
    return Bounce(
        bounce_type=kind,
        code=status or smtp_code,
        reason=_clip(reason),
        recipients=recipients,
        reference=inbound_mail.find_reference(msg),
        standard=False,
        hard_recipients=tuple(a for a in addresses) if kind == "hard" else (),
    )


def _clip(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:MAX_REASON_CHARS]
