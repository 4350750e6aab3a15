"""Reading mail that comes back to the proxy (bounces, PEC receipts): pure, no I/O.

Inbound mail is written by other people's servers, so nothing here trusts its shape: headers are read
raw (compat32, which never raises on a malformed address), bodies are decoded with replacement, text is
capped, and the ``X-Mail-Proxy-ID: <tenant>/<id>`` that every outgoing message carries is looked for in
the returned copy first, then in any text. Which tenant a reference may touch is the caller's decision.

Anyone can send mail to a bounce address, so the MIME structure is bounded: a mail declaring more than
``MAX_MIME_CONTAINERS`` multipart or message parts is refused before the (recursive) standard parser sees
it, and a parsed mail nested deeper than ``MAX_MIME_DEPTH`` levels or made of more than ``MAX_MIME_PARTS``
parts is refused too (``UnreadableMail``); nothing here walks a mail recursively.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

PROXY_ID_HEADER = "X-Mail-Proxy-ID"
PROXY_TAG_HEADER = "X-Mail-Proxy-Tag"  # proxy_tags.TAG_HEADER (the check of the tag is the caller's)
MAX_TEXT_CHARS = 64_000
_REFERENCE = re.compile(r"X-Mail-Proxy-ID:[ \t]*(?:\r?\n[ \t]+)?([A-Za-z0-9_-]{1,64})/([!-~]{1,128})", re.IGNORECASE)
_TAG = re.compile(r"X-Mail-Proxy-Tag:[ \t]*(?:\r?\n[ \t]+)?([A-Za-z2-7]{16,64})", re.IGNORECASE)
_HEADER_VALUE = re.compile(r"^\s*([A-Za-z0-9_-]{1,64})/([!-~]{1,128})\s*$")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
RETURNED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
RETURNED_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"})
MAX_MIME_DEPTH = 32
MAX_MIME_PARTS = 2000  # delivery-status groups (one per recipient) count as parts
MAX_MIME_CONTAINERS = 128  # the parser recurses once per level, at most twice per declared container
# a Content-Type header naming a container, at the start of a line (any line ending), its value maybe folded
_CONTAINER_HEADER = re.compile(rb"(?<![^\r\n])content-type:(?:[ \t]|\r?\n[ \t]|\r[ \t])*(?:multipart|message)/",
                               re.IGNORECASE)


class UnreadableMail(ValueError):
    """A mail the parsers refuse to read: its MIME structure is nested too deep or has too many parts."""


@dataclass(frozen=True)
class ProxyReference:
    """The message an inbound mail refers to, as named by its ``X-Mail-Proxy-ID``."""

    tenant_id: str
    message_id: str
    # the X-Mail-Proxy-Tag found next to it (same headers block or same text part)
    tag: str | None = field(default=None, compare=False)


def parse(raw: bytes) -> Message:
    """The mail as a message tree, or UnreadableMail when its structure is beyond the bounds."""
    containers = sum(1 for _ in _CONTAINER_HEADER.finditer(raw))
    if containers > MAX_MIME_CONTAINERS:
        raise UnreadableMail(f"mail declares {containers} multipart or message parts (limit {MAX_MIME_CONTAINERS})")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = 0
    stack: list[tuple[Message, int]] = [(msg, 1)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > MAX_MIME_DEPTH:
            raise UnreadableMail(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels")
        if parts > MAX_MIME_PARTS:
            raise UnreadableMail(f"mail has more than {MAX_MIME_PARTS} MIME parts")
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))
    return msg


def header(msg: Message, name: str) -> str:
    """A header's value as text (RFC 2047 words decoded), or "" when absent or undecodable."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (ValueError, LookupError, UnicodeError):
        return str(value).strip()


def part_text(part: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The decoded text of a leaf part (any charset, broken encodings replaced), at most ``limit`` chars."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("utf-8", errors="replace")
    return text[:limit]


def walk(msg: Message, *, into_returned: bool = True) -> Iterator[Message]:
    """Every part, depth first (without recursion); ``into_returned=False`` does not descend into a
    returned message."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        if part.get_content_type() in RETURNED_MESSAGE_TYPES and not into_returned:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(reversed([child for child in payload if isinstance(child, Message)]))


def body_text(msg: Message, *, into_returned: bool = False, limit: int = MAX_TEXT_CHARS) -> str:
    """The text/plain parts (text/html stripped of tags when there is no plain one), joined."""
    plain: list[str] = []
    html: list[str] = []
    for part in walk(msg, into_returned=into_returned):
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_type() in RETURNED_HEADER_TYPES or "delivery-status" in part.get_content_type():
            continue
        if part.get_content_type() == "text/html":
            html.append(re.sub(r"<[^>]+>", " ", part_text(part, limit)))
        else:
            plain.append(part_text(part, limit))
    return "\n".join(plain or html)[:limit]


def _reference_in_headers(headers: Message) -> ProxyReference | None:
    for value in headers.get_all(PROXY_ID_HEADER) or []:
        match = _HEADER_VALUE.match(str(value))
        if match:
            tags = headers.get_all(PROXY_TAG_HEADER) or []
            return ProxyReference(match.group(1), match.group(2), str(tags[0]).strip() if tags else None)
    return None


def _reference_in_text(text: str) -> ProxyReference | None:
    match = _REFERENCE.search(text)
    if not match:
        return None
    tag = _TAG.search(text)
    return ProxyReference(match.group(1), match.group(2), tag.group(1) if tag else None)


def find_reference(msg: Message, *, top_level: bool = True) -> ProxyReference | None:
    """The ``X-Mail-Proxy-ID`` an inbound mail carries: in the returned message or its headers first, then in
    any text part, then (``top_level``) in the mail's own headers; with the ``X-Mail-Proxy-Tag`` found in
    the same headers block or text part (checking it is the caller's: ``proxy_tags.tag_is_valid``)."""
    for part in walk(msg):
        if part is msg:
            continue
        ctype = part.get_content_type()
        if ctype in RETURNED_MESSAGE_TYPES:
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(first, Message):
                found = _reference_in_headers(first)
                if found:
                    return found
        elif ctype in RETURNED_HEADER_TYPES:
            text = part_text(part)
            found = (_reference_in_headers(HeaderParser(policy=email.policy.compat32).parsestr(text))
                     or _reference_in_text(text))
            if found:
                return found
    for part in walk(msg):
        if not part.is_multipart() and part.get_content_maintype() in ("text", "application"):
            found = _reference_in_text(part_text(part))
            if found:
                return found
    return _reference_in_headers(msg) if top_level else None


def addresses_in(text: str, limit: int = 20) -> list[str]:
    """E-mail addresses in ``text``, first seen first, without case-insensitive repeats."""
    seen: dict[str, str] = {}
    for match in _ADDRESS.finditer(text):
        address = match.group(0).strip(".")
        seen.setdefault(address.casefold(), address)
        if len(seen) >= limit:
            break
    return list(seen.values())
