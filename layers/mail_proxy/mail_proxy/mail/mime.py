"""The outgoing email, built from a stored message payload. Pure: no AWS, no I/O.

What every built message is guaranteed to carry: ``Date``, ``Message-ID`` (the payload's, else a fresh
``<uuid@sender-domain>``), ``X-Mail-Proxy-ID: <tenant>/<message id>``, ``MIME-Version``, and never a
``Bcc`` header. Every header is 7-bit on the wire (RFC 2047 for non-ASCII text, IDNA for non-ASCII
domains), except an address whose local part is UTF-8: such a message is an RFC 6532 message with UTF-8
headers, which the SMTP client sends only with SMTPUTF8. Every body part is ``7bit``, ``quoted-printable``
or ``base64``, but a ``message/rfc822`` attachment, which RFC 2046 allows only in ``7bit`` or ``8bit``.
A payload that can never be sent raises :class:`MalformedMessageError`; the sender treats it as a
permanent failure.

Attachments with a ``content_id`` (inline images referenced as ``cid:`` from the HTML) go, with the HTML
body, into a ``multipart/related`` part (RFC 2387) carrying their ``Content-ID``; other attachments follow
in ``multipart/mixed``. ``Date`` and ``Sender`` may be given in the custom headers (a valid date, one
address); the proxy's own ``Date`` is used otherwise.

Custom ``headers`` cannot replace what the proxy sets or what has its own field: a custom header named
like one of :data:`PROTECTED_HEADERS`, or any ``Content-*`` header, is *rejected* (not silently dropped),
so a client bug shows up as an error instead of a message that differs from what was asked for. The API
can call :func:`check_custom_headers` to refuse such a message at submission.

Headers are encoded once while building and kept in that form (see :class:`_WireHeader`): the stdlib's
generic header parser and refolder cost about 0.5 ms a message, more than an SMTP round trip.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from io import BytesIO
from typing import Any, NamedTuple
from urllib.parse import quote

from mail_proxy.errors import DeliveryError
from mail_proxy.mail.addresses import AddressError, check_addr_spec

__all__ = [
    "PROTECTED_HEADERS",
    "FetchedAttachment",
    "Mailbox",
    "MalformedMessageError",
    "build_email",
    "check_custom_headers",
    "envelope_recipients",
    "envelope_sender",
    "message_bytes",
    "parse_mailboxes",
]

PROTECTED_HEADERS: frozenset[str] = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "return-path",
        "message-id",
        "subject",
        "mime-version",
        "x-mail-proxy-id",
        "x-mail-proxy-tag",
    }
)
"""Lower-case names a custom header may not use (nor any name starting with ``content-``); ``Date`` and
``Sender`` are allowed and checked (:data:`CHECKED_HEADERS`)."""
CHECKED_HEADERS: frozenset[str] = frozenset({"date", "sender"})

_MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD
_HARD_MAX_LINE = 998  # RFC 5322 2.1.1: MUST
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII but ':'
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_PHRASE = re.compile(rf"(?:{_ATEXT}|[ \u0080-\U0010ffff])+")
# "addr" or "Name <addr>" without quotes, comments or escapes: most addresses, parsed without the slow path.
_SIMPLE_MAILBOX = re.compile(r'([^"()<>\\]*?)\s*<([^"()<>\\\s]+)>|([^"()<>\\\s]+)')
_MSG_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII but '<' and '>'
_CONTENT_ID = re.compile(r"[!-;=?-~]{1,250}")  # referenced as cid:<value> from HTML (RFC 2392)
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_NEWLINES = re.compile(r"\r\n?")
_UTF8 = "utf-8"


class MalformedMessageError(DeliveryError, ValueError):
    """The payload can never become a sendable message; ``str(error)`` is the reason to record."""

    @property
    def reason(self) -> str:
        return str(self)


class FetchedAttachment(NamedTuple):
    """An attachment whose bytes the sender already fetched; a plain 3-tuple works too.

    ``content_id`` (without angle brackets) makes it an inline part of the HTML body's
    ``multipart/related``; ``disposition`` is ``inline`` or ``attachment`` (default: ``inline`` with a
    ``content_id``, else ``attachment``)."""

    filename: str
    mime_type: str | None
    content: bytes
    content_id: str | None = None
    disposition: str | None = None


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


# --- the policy ------------------------------------------------------------------------------------


_REGISTRY = HeaderRegistry()


@lru_cache(maxsize=512)
def _header_max_count(lower_name: str) -> int | None:
    return _REGISTRY[lower_name].max_count


class _SmtpPolicy(EmailPolicy):
    """``email.policy.SMTP`` with the per-header registry lookup memoised.

    ``HeaderRegistry.__getitem__`` builds a new class on every call, and ``Message.__setitem__`` asks it
    for every header set; the answer depends only on the name.
    """

    def header_max_count(self, name: str) -> int | None:
        return _header_max_count(name.lower())


_SMTP_POLICY = _SmtpPolicy(linesep="\r\n")
_SMTPUTF8_POLICY = _SMTP_POLICY.clone(utf8=True)  # RFC 6532 headers: an address with a UTF-8 local part


class _WireHeader(str):
    """A header value encoded and folded once, at build time.

    The ``str`` value is the readable (decoded) text, as with the stdlib's header objects; ``fold`` gives
    the wire form. Having a ``name`` makes ``EmailPolicy`` store and fold it as a header object instead of
    re-parsing it (documented in ``email.policy``).
    """

    name: str
    max_count: int | None = None
    defects: tuple[Any, ...] = ()
    _lines: tuple[str, ...]

    def __new__(cls, name: str, value: str, lines: Sequence[str]) -> _WireHeader:
        header = super().__new__(cls, value)
        header.name = name
        header._lines = tuple(lines)
        return header

    def fold(self, *, policy: Any) -> str:
        linesep: str = policy.linesep
        return f"{self.name}: {linesep.join(self._lines)}{linesep}"


def _raw_header(name: str, value: str) -> _WireHeader:
    """A header value already known to be short ASCII."""
    return _WireHeader(name, value, (value,))


def _fold(name: str, value: str) -> list[str]:
    """Fold ASCII ``value`` at spaces so lines stay within 78 characters where a space allows it."""
    if len(name) + 2 + len(value) <= _MAX_LINE:
        lines = [value]
    else:
        words = value.split(" ")
        lines = []
        current = words[0]
        width = len(name) + 2
        for word in words[1:]:
            if width + len(current) + 1 + len(word) > _MAX_LINE and current.strip():
                lines.append(current)
                current, width = " " + word, 0
            else:
                current += " " + word
        lines.append(current)
    if len(name) + 2 + len(lines[0]) > _HARD_MAX_LINE or any(len(line) > _HARD_MAX_LINE for line in lines):
        raise MalformedMessageError(f"header {name!r} has a word longer than {_HARD_MAX_LINE} characters")
    return lines


def _check_text(value: str, field: str) -> str:
    if _CONTROL.search(value):
        raise MalformedMessageError(f"{field} contains a line break or control character")
    return value


def _unstructured(name: str, value: str, field: str) -> _WireHeader:
    _check_text(value, field)
    if value.isascii():
        lines = _fold(name, value)
    else:
        encoded = Header(value, _UTF8, maxlinelen=_MAX_LINE, header_name=name).encode(linesep="\n")
        lines = encoded.split("\n")
    return _WireHeader(name, value, lines)


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
    a domain of two labels or more, IDNA-encoded if international), lenient on display names. Groups are not supported.
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


# --- headers and bodies ---------------------------------------------------------------------------


def check_custom_headers(headers: Any) -> dict[str, str]:
    """The payload's custom ``headers`` as name → value, or :class:`MalformedMessageError` for a
    protected or invalid name, a value that is not text, or a control character in a value."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise MalformedMessageError("headers must be an object of header name to value")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise MalformedMessageError(f"headers: {name!r} is not a valid header name")
        lower = name.lower()
        if lower in PROTECTED_HEADERS or lower.startswith("content-"):
            raise MalformedMessageError(
                f"headers: {name!r} is set by the proxy or by its own field and cannot be overridden"
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise MalformedMessageError(f"headers: the value of {name!r} must be a string")
        checked[name] = _check_text(str(value), f"headers[{name!r}]")
        if lower == "date":
            _custom_date(checked[name])
        elif lower == "sender":
            _single_mailbox(checked[name], "headers['Sender']")
    return checked


def _custom_date(value: str) -> datetime:
    """An application's ``Date`` header: an RFC 5322 date-time with its zone (what mail clients write)."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise MalformedMessageError(f"headers: Date {value!r} is not an RFC 5322 date") from exc
    if when.tzinfo is None and value.rstrip().endswith("-0000"):  # UTC, local zone unknown (RFC 5322 3.3)
        return when.replace(tzinfo=UTC)
    if when.tzinfo is None:
        raise MalformedMessageError(f"headers: Date {value!r} has no time zone")
    return when


def _message_id(value: Any, sender: Mailbox) -> str:
    if not value:
        return f"<{uuid.uuid4().hex}@{sender.domain}>"
    if not isinstance(value, str):
        raise MalformedMessageError("message_id must be a string")
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not _MSG_ID.fullmatch(text):
        raise MalformedMessageError(f"message_id {value!r} is not of the form <left@right>")
    return f"<{text}>"


def _text_field(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessageError(f"{key} must be a string")
    return value


def _encode_text(text: str) -> tuple[str, str]:
    """Pick the transfer encoding for a text body: 7bit when it already is, else the shorter of
    quoted-printable and base64 (what the stdlib does too). Line ends become CRLF on output."""
    text = _NEWLINES.sub("\n", text)
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii() and "\x00" not in text and max(map(len, text.split("\n"))) <= _HARD_MAX_LINE:
        return "7bit", text
    raw = text.encode(_UTF8)
    quoted = binascii.b2a_qp(raw, istext=True).decode("ascii")
    encoded = base64.encodebytes(raw).decode("ascii")
    if len(quoted) <= len(encoded):
        return "quoted-printable", quoted
    return "base64", encoded


def _fill_text(part: MIMEPart, text: str, subtype: str) -> None:
    transfer_encoding, body = _encode_text(text)
    part["Content-Type"] = _raw_header("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _raw_header("Content-Transfer-Encoding", transfer_encoding)
    part.set_payload(body)


def _fill_multipart(part: MIMEPart, subtype: str, children: Sequence[MIMEPart], *,
                    type_param: str | None = None) -> None:
    # "=_" cannot occur in quoted-printable or base64 text, so the boundary cannot clash with them.
    boundary = f"=_{uuid.uuid4().hex}"
    extra = f'; type="{type_param}"' if type_param else ""
    value = f'multipart/{subtype}; boundary="{boundary}"{extra}'
    part["Content-Type"] = _WireHeader("Content-Type", value, _fold("Content-Type", value))
    for child in children:
        part.attach(child)


def _mime_param(name: str, value: str) -> str:
    if value.isascii():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"'
    return f"{name}*=utf-8''{quote(value, safe='')}"  # RFC 2231


def _content_id(attachment: Sequence[Any]) -> str | None:
    value = attachment[3] if len(attachment) > 3 else None
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not _CONTENT_ID.fullmatch(text):
        raise MalformedMessageError(f"attachment content_id {value!r} is not printable ASCII without spaces or <>")
    return text


def _attachment_part(attachment: Sequence[Any]) -> MIMEPart:
    filename, mime_type, content = attachment[:3]
    if not isinstance(filename, str) or not filename:
        raise MalformedMessageError("attachment filename must be a non-empty string")
    _check_text(filename, "attachment filename")
    if not isinstance(content, bytes | bytearray | memoryview):
        raise MalformedMessageError(f"attachment {filename!r} content must be bytes")
    content_id = _content_id(attachment)
    given_disposition = attachment[4] if len(attachment) > 4 else None
    disposition_type = given_disposition or ("inline" if content_id else "attachment")
    if disposition_type not in ("inline", "attachment"):
        raise MalformedMessageError(f"attachment {filename!r} disposition must be 'inline' or 'attachment'")
    # An unusable declared type is not worth failing the message for: it becomes a generic binary part.
    content_type = mime_type.lower() if isinstance(mime_type, str) and _MIME_TYPE.fullmatch(mime_type) else None
    part = MIMEPart(policy=_SMTP_POLICY)
    type_value = f"{content_type or 'application/octet-stream'}; {_mime_param('name', filename)}"
    disposition = f"{disposition_type}; {_mime_param('filename', filename)}"
    part["Content-Type"] = _WireHeader("Content-Type", type_value, _fold("Content-Type", type_value))
    part["Content-Disposition"] = _WireHeader(
        "Content-Disposition", disposition, _fold("Content-Disposition", disposition)
    )
    if content_id:
        part["Content-ID"] = _WireHeader("Content-ID", f"<{content_id}>", _fold("Content-ID", f"<{content_id}>"))
    if content_type == "message/rfc822":
        transfer_encoding, text = _message_payload(filename, bytes(content))
    else:
        transfer_encoding, text = "base64", base64.encodebytes(bytes(content)).decode("ascii")
    part["Content-Transfer-Encoding"] = _raw_header("Content-Transfer-Encoding", transfer_encoding)
    part.set_payload(text)
    return part


def _message_payload(filename: str, content: bytes) -> tuple[str, str]:
    """A ``message/rfc822`` part as it is (RFC 2046 5.2.1: only 7bit, 8bit or binary, never base64), with
    CRLF line ends; 8-bit bytes are carried as they are (surrogate escapes for the byte generator)."""
    lines = _NEWLINES.sub("\n", content.decode("ascii", "surrogateescape")).split("\n")
    if any(len(line.encode("ascii", "surrogateescape")) > _HARD_MAX_LINE for line in lines):
        raise MalformedMessageError(
            f"attachment {filename!r}: a message/rfc822 part with a line over {_HARD_MAX_LINE} characters cannot "
            "be sent (RFC 2046 forbids encoding it); attach it as application/octet-stream")
    text = "\r\n".join(lines)
    if not text.endswith("\r\n"):
        text += "\r\n"
    return ("7bit" if content.isascii() else "8bit"), text


def _fill_body(msg: EmailMessage, payload: Mapping[str, Any], attachments: Sequence[Any]) -> None:
    content_type = payload.get("content_type") or "plain"
    if content_type not in ("plain", "html"):
        raise MalformedMessageError(f"content_type must be 'plain' or 'html', not {content_type!r}")
    body = _text_field(payload, "body")
    html_body = payload.get("html_body")
    if html_body is not None and not isinstance(html_body, str):
        raise MalformedMessageError("html_body must be a string")
    if html_body is not None and content_type == "html":
        raise MalformedMessageError("html_body is the HTML alternative of a plain body: content_type must be 'plain'")

    parts = [_attachment_part(item) for item in attachments]
    has_html = html_body is not None or content_type == "html"
    related = [part for part in parts if has_html and part["Content-ID"] is not None]
    mixed = [part for part in parts if not (has_html and part["Content-ID"] is not None)]
    content: MIMEPart = msg if not parts else MIMEPart(policy=_SMTP_POLICY)
    if html_body is None:
        _fill_text(content, body, content_type)
    else:
        plain, html = MIMEPart(policy=_SMTP_POLICY), MIMEPart(policy=_SMTP_POLICY)
        _fill_text(plain, body, "plain")
        _fill_text(html, html_body, "html")
        _fill_multipart(content, "alternative", [plain, html])
    if related:  # the HTML and the images it shows as cid: (RFC 2387); its type names the root part
        root_type = "multipart/alternative" if html_body is not None else "text/html"
        root, content = content, (msg if not mixed else MIMEPart(policy=_SMTP_POLICY))
        _fill_multipart(content, "related", [root, *related], type_param=root_type)
    if mixed:
        _fill_multipart(msg, "mixed", [content, *mixed])


@dataclass(frozen=True)
class ListUnsubscribe:
    """The ``List-Unsubscribe`` URIs of one message (RFC 2369), the HTTPS one first; ``one_click`` adds
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058: a POST to the first URI unsubscribes)."""

    uris: tuple[str, ...]
    one_click: bool = True


def _list_unsubscribe_headers(msg: EmailMessage, unsubscribe: ListUnsubscribe) -> None:
    for uri in unsubscribe.uris:
        if not uri.isascii() or _CONTROL.search(uri) or any(c in uri for c in " <>,"):
            raise MalformedMessageError("List-Unsubscribe URI is not a plain ASCII URI")
    value = ", ".join(f"<{uri}>" for uri in unsubscribe.uris)
    msg["List-Unsubscribe"] = _WireHeader("List-Unsubscribe", value, _fold("List-Unsubscribe", value))
    if unsubscribe.one_click:
        msg["List-Unsubscribe-Post"] = _raw_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")


def build_email(
    payload: Mapping[str, Any],
    *,
    tenant_id: str,
    message_id: str,
    now: datetime | None = None,
    attachments: Sequence[FetchedAttachment] = (),
    list_unsubscribe: ListUnsubscribe | None = None,
    proxy_tag: str | None = None,
) -> EmailMessage:
    """The email to send for ``payload`` (the submitted message fields), as the proxy's message
    ``message_id`` of ``tenant_id``.

    ``now`` is the ``Date`` (a naive value is taken as UTC). ``attachments`` are parts the sender has
    already fetched; the payload's own ``attachments`` (storage pointers) are not read here.
    ``list_unsubscribe``: the one-click unsubscribe headers, replacing any the payload's ``headers`` give.
    ``proxy_tag``: the ``X-Mail-Proxy-Tag`` (``proxy_tags.make_tag``) that proves returned mail is about
    this message; the sender always gives it.
    Raises :class:`MalformedMessageError` when the payload can never be sent.
    """
    sender = _single_mailbox(payload.get("from"), "from")
    to = parse_mailboxes(payload.get("to"), field="to")
    cc = parse_mailboxes(payload.get("cc"), field="cc")
    if not (to or cc or parse_mailboxes(payload.get("bcc"), field="bcc")):
        raise MalformedMessageError("no recipients (to, cc and bcc are all empty)")
    reply_to = parse_mailboxes(payload.get("reply_to"), field="reply_to")
    custom = check_custom_headers(payload.get("headers"))
    given = {name.lower(): value for name, value in custom.items() if name.lower() in CHECKED_HEADERS}
    when = _custom_date(given["date"]) if "date" in given else now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    on_behalf = _single_mailbox(given["sender"], "headers['Sender']") if "sender" in given else None
    addresses = [sender, *to, *cc, *reply_to, *([on_behalf] if on_behalf else [])]
    utf8 = any(not mailbox.addr_spec.isascii() for mailbox in addresses)

    msg = EmailMessage(policy=_SMTPUTF8_POLICY if utf8 else _SMTP_POLICY)
    msg["Date"] = _raw_header("Date", format_datetime(when))
    msg["From"] = _address_header("From", [sender])
    if on_behalf is not None:
        msg["Sender"] = _address_header("Sender", [on_behalf])
    if to:
        msg["To"] = _address_header("To", to)
    if cc:
        msg["Cc"] = _address_header("Cc", cc)
    if reply_to:
        msg["Reply-To"] = _address_header("Reply-To", reply_to)
    msg["Subject"] = _unstructured("Subject", _text_field(payload, "subject"), "subject")
    msg_id = _message_id(payload.get("message_id"), sender)
    msg["Message-ID"] = _WireHeader("Message-ID", msg_id, _fold("Message-ID", msg_id))
    msg["X-Mail-Proxy-ID"] = _unstructured("X-Mail-Proxy-ID", f"{tenant_id}/{message_id}", "message id")
    if proxy_tag is not None:
        msg["X-Mail-Proxy-Tag"] = _raw_header("X-Mail-Proxy-Tag", proxy_tag)
    if list_unsubscribe is not None and list_unsubscribe.uris:
        custom = {k: v for k, v in custom.items() if not k.lower().startswith("list-unsubscribe")}
        _list_unsubscribe_headers(msg, list_unsubscribe)
    for name, value in custom.items():
        if name.lower() not in CHECKED_HEADERS:
            msg[name] = _unstructured(name, value, f"headers[{name!r}]")
    msg["MIME-Version"] = _raw_header("MIME-Version", "1.0")
    _fill_body(msg, payload, attachments)
    return msg


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as SMTP ``DATA``: CRLF line ends, 7-bit headers but UTF-8 addresses (the SMTP client
    dot-stuffs, and asks for SMTPUTF8 when the headers are not ASCII)."""
    out = BytesIO()
    policy = msg.policy if isinstance(msg.policy, _SmtpPolicy) else _SMTP_POLICY
    _WireGenerator(out, mangle_from_=False, policy=policy).flatten(msg, unixfrom=False)
    return out.getvalue()


class _WireGenerator(BytesGenerator):
    """Writes an 8-bit ``message/rfc822`` payload (kept as surrogate escapes) back as its bytes; the
    stdlib's generator would refuse it."""

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", "surrogateescape")
