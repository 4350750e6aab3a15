"""The outgoing email, built from a stored message payload. Pure: no AWS, no I/O.

What every built message is guaranteed to carry: ``Date``, ``Message-ID`` (the payload's, else one made
from the proxy's identity of the message, at the envelope sender's domain: see :func:`stable_message_id`),
``X-Mail-Proxy-ID: <tenant>/<message id>``, ``MIME-Version``, and never a
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

This module assembles the message and checks the custom headers; its parts are built by its siblings:
``mime_headers`` (header values encoded once in their wire form, and :class:`MalformedMessageError`),
``mime_addresses`` (mailboxes and the SMTP envelope) and ``mime_bodies`` (text, HTML and attachment parts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from io import BytesIO
from typing import Any

from mail_proxy.mail.mime_addresses import (
    _address_header,
    _single_mailbox,
    envelope_sender,
    parse_mailboxes,
)
from mail_proxy.mail.mime_bodies import FetchedAttachment, _fill_body, _text_field
from mail_proxy.mail.mime_headers import (
    _CONTROL,
    _FIELD_NAME,
    _MSG_ID,
    _SMTP_POLICY,
    _SMTPUTF8_POLICY,
    MalformedMessageError,
    _check_text,
    _fold,
    _raw_header,
    _SmtpPolicy,
    _unstructured,
    _WireHeader,
)

__all__ = [
    "CHECKED_HEADERS",
    "PROTECTED_HEADERS",
    "ListUnsubscribe",
    "build_email",
    "check_custom_headers",
    "message_bytes",
    "stable_message_id",
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


def stable_message_id(tenant_id: str, message_id: str, created_ms: int | None, envelope_from: str) -> str:
    """The ``Message-ID`` of a message whose payload gives none: the only place one is made. The same for
    every attempt (a retried message is the same message to its recipients), different for a message
    submitted again under the same id (``created_ms``), at the domain of the envelope sender."""
    seed = f"{tenant_id}/{message_id}/{'' if created_ms is None else created_ms}".encode()
    domain = envelope_from.rpartition("@")[2] or "mail-proxy.invalid"
    return f"<{hashlib.sha256(seed).hexdigest()[:32]}@{domain}>"


def _message_id(value: Any, default: Callable[[], str]) -> str:
    if not value:
        return default()
    if not isinstance(value, str):
        raise MalformedMessageError("message_id must be a string")
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not _MSG_ID.fullmatch(text):
        raise MalformedMessageError(f"message_id {value!r} is not of the form <left@right>")
    return f"<{text}>"


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
    created_ms: int | None = None,
    now: datetime | None = None,
    attachments: Sequence[FetchedAttachment] = (),
    list_unsubscribe: ListUnsubscribe | None = None,
    proxy_tag: str | None = None,
) -> EmailMessage:
    """The email to send for ``payload`` (the submitted message fields), as the proxy's message
    ``message_id`` of ``tenant_id``.

    ``created_ms`` (when the proxy accepted it) makes the ``Message-ID`` of a payload that gives none.
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
    msg_id = _message_id(payload.get("message_id"), lambda: stable_message_id(
        tenant_id, message_id, created_ms, envelope_sender(payload)))
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
