"""Turning e-mail as applications hold it into ``add-messages`` items: an ``.eml`` file (RFC 5322 bytes)
for ``mail-proxy send``, and a Django ``EmailMessage`` for the Django backend.

Attachments travel inline as base64 (``fetch_mode: "base64"``, the data in ``storage_path``); an inline
part with a ``Content-ID`` keeps it (``content_id``), so the HTML's ``cid:`` references still show it. A
given ``Date`` and ``Sender`` are carried as headers, a given Message-ID as the ``message_id`` field. What
cannot be carried (a header the proxy builds from the message fields) is named in the warnings.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.parser
import email.policy
import mimetypes
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Headers the proxy builds from the message fields; copying them as custom headers would be refused.
PROXY_SET_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Message-ID", "X-Mail-Proxy-ID",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "Return-Path",
    )
)
CARRIED_HEADERS = frozenset({"date", "sender"})  # the proxy takes these as given (checked)
OCTET_STREAM = "application/octet-stream"


@dataclass
class ComposedMessage:
    """An ``add-messages`` item and what could not be carried over (to tell the user, never silently)."""

    message: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def new_message_id(prefix: str) -> str:
    """A unique message id for the proxy (``prefix-`` + a UUID), at most 128 printable characters."""
    return f"{prefix}-{uuid.uuid4().hex}"[:128]


def base64_attachment(filename: str, content: bytes | str, mime_type: str | None = None, *,
                      content_id: str | None = None, disposition: str | None = None) -> dict[str, Any]:
    """One attachment as the proxy takes it inline. With ``content_id`` it is an inline part the HTML body
    shows as ``<img src="cid:...">`` (angle brackets around the id are optional)."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    guessed = mime_type or mimetypes.guess_type(filename)[0] or OCTET_STREAM
    attachment = {"filename": filename, "storage_path": base64.b64encode(data).decode("ascii"),
                  "fetch_mode": "base64", "mime_type": guessed}
    if content_id:
        attachment["content_id"] = content_id.strip().removeprefix("<").removesuffix(">")
    if disposition:
        attachment["disposition"] = disposition
    return attachment


def _part_attachment(part: email.message.Message, number: int) -> dict[str, Any] | None:
    """A MIME part as an attachment: its decoded content, name, type, Content-ID and disposition; a
    ``message/rfc822`` part as the bytes of the message it holds. None when it cannot be decoded."""
    content_type = part.get_content_type()
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or content_type == "message/rfc822":
        inner = part.get_payload(0) if part.is_multipart() else None
        data = inner.as_bytes() if isinstance(inner, email.message.Message) else None
    if data is None:
        return None
    filename = part.get_filename() or _fallback_name(part, number)
    content_id = part.get("Content-ID")
    disposition = part.get_content_disposition()
    implied = "inline" if content_id else "attachment"  # the proxy's default: only a different one is sent
    return base64_attachment(filename, data, content_type, content_id=content_id,
                             disposition=disposition if disposition in ("inline", "attachment") and
                             disposition != implied else None)


def _fallback_name(part: email.message.Message, number: int) -> str:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0) if part.is_multipart() else None
        return _eml_name(str(inner.get("Subject") or "") if isinstance(inner, email.message.Message) else "", number)
    return f"attachment-{number}{mimetypes.guess_extension(part.get_content_type()) or ''}"


def _eml_name(subject: str, number: int) -> str:
    """A forwarded message's file name: its subject (as mail clients name it), else ``message-N``."""
    safe = "".join(c if c.isalnum() or c in " -_." else "_" for c in subject).strip()[:60]
    return f"{safe or f'message-{number}'}.eml"


# ------------------------------------------------------------------------------------------------ .eml


def message_from_eml(raw: bytes, *, account_id: str, message_id: str | None = None) -> ComposedMessage:
    """An ``.eml`` file as one message: From/To/Cc/Bcc/Reply-To/Subject, the plain and HTML bodies, every
    attachment (base64), custom ``X-`` headers, and its Message-ID (kept as ``message_id``)."""
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    composed = ComposedMessage({"id": message_id or new_message_id("eml"), "account_id": account_id})
    message = composed.message
    if parsed["From"] is not None:
        message["from"] = str(parsed["From"])
    for header, name in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = _addresses(parsed, header)
        if addresses:
            message[name] = addresses
    reply_to = _addresses(parsed, "Reply-To")
    if reply_to:
        message["reply_to"] = ", ".join(reply_to)
    if parsed["Subject"] is not None:
        message["subject"] = str(parsed["Subject"])
    if parsed["Message-ID"] is not None:
        message["message_id"] = str(parsed["Message-ID"]).strip()
    headers = {name: str(value) for name, value in parsed.items()
               if (name.lower().startswith("x-") or name.lower() in CARRIED_HEADERS)
               and name.lower() not in PROXY_SET_HEADERS}
    if headers:
        message["headers"] = headers

    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    if plain is not None:
        message["body"] = _text(plain)
        if html is not None:
            message["html_body"] = _text(html)
    elif html is not None:
        message["body"] = _text(html)
        message["content_type"] = "html"
    else:
        composed.warnings.append("no text/plain or text/html body found; the message body is empty")

    attachments = []
    for number, part in enumerate(_eml_attachments(parsed), start=1):
        attachment = _part_attachment(part, number)
        if attachment is None:
            composed.warnings.append(f"attachment {part.get_filename() or number!r} could not be decoded "
                                     "and was skipped")
            continue
        attachments.append(attachment)
    if attachments:
        message["attachments"] = attachments
    return composed


def _eml_attachments(parsed: email.message.EmailMessage) -> list[email.message.MIMEPart]:
    """The attachments, and the inline parts of a ``multipart/related`` body (images shown by the HTML)."""
    found: list[email.message.MIMEPart] = list(parsed.iter_attachments())
    for part in parsed.walk():
        if part.get_content_type() == "multipart/related":
            body = part.get_body(preferencelist=("html", "plain"))
            found.extend(child for child in part.iter_parts() if child is not body and not child.is_multipart()
                         and child.get("Content-ID") and all(child is not seen for seen in found))
    return found


def _addresses(parsed: email.message.EmailMessage, header: str) -> list[str]:
    found: list[str] = []
    for value in parsed.get_all(header) or []:
        found.extend(str(address) for address in getattr(value, "addresses", ()) if address.addr_spec)
    return found


def _text(part: email.message.MIMEPart) -> str:
    content = part.get_content()
    return content if isinstance(content, str) else content.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------- Django


def message_from_django(email_message: Any, *, account_id: str, message_id: str | None = None,
                        priority: int | str | None = None) -> ComposedMessage:
    """A Django ``EmailMessage`` (or ``EmailMultiAlternatives``) as one message.

    Reads only the documented attributes (``subject``, ``body``, ``from_email``, ``to``, ``cc``, ``bcc``,
    ``reply_to``, ``extra_headers``, ``content_subtype``, ``alternatives``, ``attachments``), so it does not
    need Django itself. An HTML alternative becomes ``html_body``; other alternatives and every attachment
    travel as base64 attachments, a MIME part keeping its ``Content-ID`` and disposition (an inline image)
    and a ``message/rfc822`` attachment the bytes of its message. ``Date`` and ``Sender`` headers are
    carried; headers the proxy builds itself (``To``, ``Content-*``, ...) cannot be, and are named in the
    warnings, as is a charset other than UTF-8 (the proxy writes UTF-8). Optional attributes
    ``mail_proxy_id``, ``mail_proxy_priority``, ``mail_proxy_batch_code`` and ``mail_proxy_deferred_ts``
    set those fields of the proxy's message.
    """
    extra = {str(k): str(v) for k, v in (getattr(email_message, "extra_headers", None) or {}).items()}
    lowered = {k.lower(): v for k, v in extra.items()}
    chosen_id = getattr(email_message, "mail_proxy_id", None) or message_id or new_message_id("django")
    composed = ComposedMessage({"id": chosen_id, "account_id": account_id})
    message = composed.message
    message["from"] = lowered.get("from") or email_message.from_email
    message["to"] = list(email_message.to or [])
    for name in ("cc", "bcc"):
        values = list(getattr(email_message, name, None) or [])
        if values:
            message[name] = values
    reply_to = lowered.get("reply-to") or ", ".join(getattr(email_message, "reply_to", None) or [])
    if reply_to:
        message["reply_to"] = reply_to
    message["subject"] = str(email_message.subject or "")
    if lowered.get("message-id"):
        message["message_id"] = lowered["message-id"]
    headers = {k: v for k, v in extra.items() if k.lower() not in PROXY_SET_HEADERS}
    if headers:
        message["headers"] = headers
    for name in extra:
        if name.lower() in PROXY_SET_HEADERS and name.lower() not in _DJANGO_HEADERS_USED:
            composed.warnings.append(f"header {name} not carried: the proxy builds it from the message fields")
    encoding = getattr(email_message, "encoding", None)
    if encoding and str(encoding).lower().replace("_", "-") not in ("utf-8", "utf8"):
        composed.warnings.append(f"encoding {encoding} not carried: the proxy writes UTF-8")

    message["body"] = str(email_message.body or "")
    if getattr(email_message, "content_subtype", "plain") == "html":
        message["content_type"] = "html"
    attachments: list[dict[str, Any]] = []
    for number, alternative in enumerate(getattr(email_message, "alternatives", None) or [], start=1):
        content, mimetype = alternative[0], alternative[1]
        if mimetype == "text/html" and "html_body" not in message and message.get("content_type") != "html":
            message["html_body"] = content.decode("utf-8") if isinstance(content, bytes) else str(content)
        else:
            extension = mimetypes.guess_extension(mimetype) or ""
            attachments.append(base64_attachment(f"alternative-{number}{extension}", content, mimetype))
            composed.warnings.append(f"alternative {mimetype} sent as an attachment")
    attachments.extend(_django_attachments(getattr(email_message, "attachments", None) or [], composed.warnings))
    if attachments:
        message["attachments"] = attachments

    chosen_priority = getattr(email_message, "mail_proxy_priority", None)
    if chosen_priority is None:
        chosen_priority = priority
    for name, value in (("priority", chosen_priority),
                        ("batch_code", getattr(email_message, "mail_proxy_batch_code", None)),
                        ("deferred_ts", getattr(email_message, "mail_proxy_deferred_ts", None))):
        if value is not None:
            message[name] = value
    return composed


_DJANGO_HEADERS_USED = frozenset({"from", "reply-to", "message-id"})  # taken into their message fields


def _django_attachments(items: Iterable[Any], warnings: list[str]) -> list[dict[str, Any]]:
    """Django keeps an attachment either as a MIME part (an inline image with its Content-ID, say) or as
    ``(filename, content, mimetype)``, where a ``message/rfc822`` content may be a Django or stdlib message."""
    found = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, email.message.Message):
            attachment = _part_attachment(item, number)
            if attachment is None:
                warnings.append(f"attachment {item.get_filename() or number!r} could not be decoded and was skipped")
                continue
            found.append(attachment)
            continue
        filename, content, mimetype = item[0], item[1], item[2]
        if mimetype == "message/rfc822" and not isinstance(content, bytes | str):
            if hasattr(content, "message") and not isinstance(content, email.message.Message):
                content = content.message()  # a Django EmailMessage
            if isinstance(content, email.message.Message):
                subject = str(content.get("Subject") or "")
                content = content.as_bytes()
                filename = filename or _eml_name(subject, number)
        if mimetype == "message/rfc822" and not filename:
            filename = _eml_name("", number)
        found.append(base64_attachment(filename or f"attachment-{number}", content, mimetype))
    return found
