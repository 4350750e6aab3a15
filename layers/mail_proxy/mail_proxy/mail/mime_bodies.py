"""Bodies of the outgoing email: text and HTML parts with their transfer encodings, and attachments
(``multipart/related`` for inline images, ``multipart/mixed`` for the rest). Pure: no AWS, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping, Sequence
from email.message import EmailMessage, MIMEPart
from typing import Any, NamedTuple
from urllib.parse import quote

from mail_proxy.mail.mime_headers import (
    _HARD_MAX_LINE,
    _SMTP_POLICY,
    _UTF8,
    MalformedMessageError,
    _check_text,
    _fold,
    _raw_header,
    _WireHeader,
)

_CONTENT_ID = re.compile(r"[!-;=?-~]{1,250}")  # referenced as cid:<value> from HTML (RFC 2392)
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_NEWLINES = re.compile(r"\r\n?")


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
