"""Turning e-mail as applications hold it into ``add-messages`` items: an ``.eml`` file (RFC 5322 bytes)
for ``mail-proxy send``, and a Django ``EmailMessage`` for the Django backend.

Attachments travel inline as base64 (``fetch_mode: "base64"``, the data in ``storage_path``); the proxy
sets ``Date`` and ``Message-ID`` itself, so those headers are not copied (a given Message-ID is kept as
the ``message_id`` field).
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
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "X-Mail-Proxy-ID",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "Return-Path",
        "Sender",
    )
)
OCTET_STREAM = "application/octet-stream"


@dataclass
class ComposedMessage:
    """An ``add-messages`` item and what could not be carried over (to tell the user, never silently)."""

    message: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def new_message_id(prefix: str) -> str:
    """A unique message id for the proxy (``prefix-`` + a UUID), at most 128 printable characters."""
    return f"{prefix}-{uuid.uuid4().hex}"[:128]


def base64_attachment(filename: str, content: bytes | str, mime_type: str | None = None) -> dict[str, Any]:
    """One attachment as the proxy takes it inline."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    guessed = mime_type or mimetypes.guess_type(filename)[0] or OCTET_STREAM
    return {"filename": filename, "storage_path": base64.b64encode(data).decode("ascii"),
            "fetch_mode": "base64", "mime_type": guessed}


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
               if name.lower().startswith("x-") and name.lower() not in PROXY_SET_HEADERS}
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
    for number, part in enumerate(parsed.iter_attachments(), start=1):
        filename = part.get_filename() or f"attachment-{number}"
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):  # message/rfc822 and other containers: keep their bytes as they are
            inner = part.get_payload(0) if part.is_multipart() else None
            data = inner.as_bytes() if isinstance(inner, email.message.Message) else None
        if data is None:
            composed.warnings.append(f"attachment {filename!r} could not be decoded and was skipped")
            continue
        attachments.append(base64_attachment(filename, data, part.get_content_type()))
    if attachments:
        message["attachments"] = attachments
    return composed


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
    travel as base64 attachments. Optional attributes ``mail_proxy_id``, ``mail_proxy_priority``,
    ``mail_proxy_batch_code`` and ``mail_proxy_deferred_ts`` set those fields of the proxy's message.
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
    attachments.extend(_django_attachments(getattr(email_message, "attachments", None) or []))
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


def _django_attachments(items: Iterable[Any]) -> list[dict[str, Any]]:
    """Django keeps an attachment either as a MIME part or as ``(filename, content, mimetype)``."""
    found = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, email.message.Message):
            filename = item.get_filename() or f"attachment-{number}"
            data = item.get_payload(decode=True)
            if not isinstance(data, bytes):
                data = item.as_bytes()
            found.append(base64_attachment(filename, data, item.get_content_type()))
        else:
            filename, content, mimetype = item[0], item[1], item[2]
            found.append(base64_attachment(filename or f"attachment-{number}", content, mimetype))
    return found
