"""Addresses of the outgoing email: the mailboxes of its header fields and its SMTP envelope. Pure: no AWS,
no I/O. A mailbox's ``addr_spec`` is ASCII (IDNA domain) and safe for the envelope, but a UTF-8 local part,
which only an SMTPUTF8 server takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from email.header import Header
from typing import Any, NamedTuple

from mail_proxy.mail.addresses import AddressError, check_addr_spec
from mail_proxy.mail.mime_headers import _UTF8, MalformedMessageError, _check_text, _fold, _WireHeader

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_PHRASE = re.compile(rf"(?:{_ATEXT}|[ \u0080-\U0010ffff])+")
# "addr" or "Name <addr>" without quotes, comments or escapes: most addresses, parsed without the slow path.
_SIMPLE_MAILBOX = re.compile(r'([^"()<>\\]*?)\s*<([^"()<>\\\s]+)>|([^"()<>\\\s]+)')


class Mailbox(NamedTuple):
    """One parsed address: ``addr_spec`` is ASCII (IDNA domain) and safe for the SMTP envelope."""

    display_name: str
    addr_spec: str

    @property
    def domain(self) -> str:
        return self.addr_spec.rpartition("@")[2]

    def __str__(self) -> str:
        if not self.display_name:
            return self.addr_spec
        return f"{_quote_phrase(self.display_name)} <{self.addr_spec}>"

    def encoded(self) -> str:
        """The header form: non-ASCII display names as RFC 2047 encoded words."""
        if not self.display_name:
            return self.addr_spec
        if self.display_name.isascii():
            return str(self)
        words = Header(self.display_name, _UTF8).encode(linesep="\n").replace("\n", "")
        return f"{words} <{self.addr_spec}>"


def _address_header(name: str, mailboxes: Sequence[Mailbox]) -> _WireHeader:
    wire = ", ".join(mailbox.encoded() for mailbox in mailboxes)
    return _WireHeader(name, ", ".join(map(str, mailboxes)), _fold(name, wire))


def _quote_phrase(text: str) -> str:
    if _PLAIN_PHRASE.fullmatch(text) and text.strip() == text:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- addresses ------------------------------------------------------------------------------------


def _split_outside_quotes(text: str, field: str) -> list[str]:
    """Split an address list at commas that are not inside quotes, comments or angle brackets."""
    if '"' not in text and "(" not in text and "\\" not in text:
        return [item.strip() for item in text.split(",") if item.strip()]
    items: list[str] = []
    start, quoted, escaped, angle, comment = 0, False, False, 0, 0
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            comment = 1
        elif char == "<":
            angle += 1
        elif char == ">":
            angle -= 1
        elif char == "," and angle == 0:
            items.append(text[start:index])
            start = index + 1
    if quoted or comment or angle:
        raise MalformedMessageError(f"{field}: unbalanced quote, comment or angle bracket in {text!r}")
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _take_comments(item: str) -> tuple[str, str]:
    """Remove ``(comments)`` outside quotes; return the rest and the comments' text (a display name
    for the old ``addr (Name)`` form)."""
    kept: list[str] = []
    comments: list[str] = []
    quoted, escaped, depth = False, False, 0
    for char in item:
        if depth:
            if escaped:
                escaped = False
                comments.append(char)
            elif char == "\\":
                escaped = True
            elif char == "(":
                depth += 1
                comments.append(char)
            elif char == ")":
                depth -= 1
                if depth:
                    comments.append(char)
            else:
                comments.append(char)
            continue
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "(" and not quoted:
            depth = 1
            comments.append(" ")
            continue
        kept.append(char)
    return "".join(kept).strip(), " ".join("".join(comments).split())


def _last_angle_start(item: str) -> int:
    """Where the ``<addr>`` of ``phrase <addr>`` starts: the last ``<`` outside quotes and comments."""
    position, quoted, escaped, depth = -1, False, False, 0
    for index, char in enumerate(item):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            depth = 1
        elif char == "<":
            position = index
    return position


def _decode_phrase(phrase: str, field: str) -> str:
    """A display name as written, with quoted parts unquoted (``Jo "Q" Smith`` -> ``Jo Q Smith``);
    comments are kept as text, as mail clients show them."""
    decoded: list[str] = []
    quoted, escaped, depth = False, False, 0
    for char in phrase:
        if escaped:
            decoded.append(char)
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
            if quoted:
                decoded.append(char)
        elif char == '"' and not depth:
            quoted = True
        elif char in "<>" and not depth:
            raise MalformedMessageError(f"{field}: {phrase!r} is not a valid display name")
        else:
            depth = max(0, depth + {"(": 1, ")": -1}.get(char, 0))
            decoded.append(char)
    return " ".join("".join(decoded).split())


def _addr_spec(text: str, field: str) -> str:
    """The address in the grammar the API accepts (:func:`mail_proxy.mail.addresses.check_addr_spec`)."""
    try:
        return check_addr_spec(text.strip(), field=field)
    except AddressError as exc:
        raise MalformedMessageError(str(exc)) from exc


def _mailbox(item: str, field: str) -> Mailbox:
    simple = _SIMPLE_MAILBOX.fullmatch(item)
    if simple:
        phrase, angle_address, bare_address = simple.groups()
        if bare_address is not None:
            return Mailbox("", _addr_spec(bare_address, field))
        return Mailbox(" ".join(phrase.split()), _addr_spec(angle_address, field))
    start = _last_angle_start(item)
    if start >= 0:  # phrase <addr> [comment]
        end = item.find(">", start)
        trailing, _ = _take_comments(item[end + 1 :]) if end > 0 else ("?", "")
        if trailing:
            raise MalformedMessageError(f"{field}: {item!r} is not an e-mail address")
        address, _ = _take_comments(item[start + 1 : end])
        return Mailbox(_decode_phrase(item[:start], field), _addr_spec(address, field))
    address, comment = _take_comments(item)  # addr [(Name)]
    if ">" in address:
        raise MalformedMessageError(f"{field}: {item!r} is not an e-mail address")
    return Mailbox(comment, _addr_spec(address, field))


def parse_mailboxes(value: str | Sequence[str] | None, *, field: str) -> list[Mailbox]:
    """Parse a list, or a comma-separated string, of ``addr``, ``Name <addr>`` or ``addr (Name)``.

    Strict on the address itself (the API's grammar, :mod:`mail_proxy.mail.addresses`: dot-atom local part,
    a domain of two labels or more, IDNA-encoded if international), lenient on display names. Groups are not
    supported.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        raise MalformedMessageError(f"{field} must be a string or a list of strings")
    mailboxes: list[Mailbox] = []
    for item in items:
        if not isinstance(item, str):
            raise MalformedMessageError(f"{field} must be a string or a list of strings")
        _check_text(item, field)
        mailboxes.extend(_mailbox(part, field) for part in _split_outside_quotes(item, field))
    return mailboxes


def _single_mailbox(value: Any, field: str) -> Mailbox:
    mailboxes = parse_mailboxes(value, field=field)
    if len(mailboxes) != 1:
        raise MalformedMessageError(f"{field} must be exactly one e-mail address")
    return mailboxes[0]


def envelope_sender(payload: Mapping[str, Any]) -> str:
    """The SMTP ``MAIL FROM`` address: ``return_path`` when given, else the address part of ``from``."""
    if payload.get("return_path"):
        return _single_mailbox(payload["return_path"], "return_path").addr_spec
    return _single_mailbox(payload.get("from"), "from").addr_spec


def envelope_recipients(payload: Mapping[str, Any]) -> list[str]:
    """Every ``RCPT TO`` address: to, cc then bcc, without case-insensitive repeats, order kept."""
    seen: set[str] = set()
    recipients: list[str] = []
    for field in ("to", "cc", "bcc"):
        for mailbox in parse_mailboxes(payload.get(field), field=field):
            key = mailbox.addr_spec.casefold()
            if key not in seen:
                seen.add(key)
                recipients.append(mailbox.addr_spec)
    if not recipients:
        raise MalformedMessageError("no recipients (to, cc and bcc are all empty)")
    return recipients
