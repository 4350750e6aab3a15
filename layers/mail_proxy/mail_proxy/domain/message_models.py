"""Messages: what the API accepts (``MessageIn`` and its attachments and headers), how a validation error is
described, and a message's record as the API shows it (pure: no AWS, no I/O)."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from mail_proxy.domain import clock
from mail_proxy.domain.models import (
    BATCH_CODE_PATTERN,
    DEFAULT_PRIORITY,
    MAX_DEFER_SECONDS,
    MAX_RECIPIENTS,
    AccountId,
    MessageId,
    MessageStatus,
    Strict,
    TenantId,
    View,
    _alias,
    _no_control,
    normalise_priority,
)
from mail_proxy.mail.addresses import (
    AddressError,
    parse_address_list,
    parse_mailbox,
)

RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Message-ID", "X-Mail-Proxy-ID", "X-Mail-Proxy-Tag",
        "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "Return-Path",
    )
)
CHECKED_HEADERS = frozenset({"date", "sender"})  # the application's own, carried once checked
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_MESSAGE_ID = re.compile(r"<([!-;=?-~]+@[!-;=?-~]+)>|([!-;=?-~]+@[!-;=?-~]+)")  # as mime.build_email: <left@right>
_HARD_MAX_LINE = 998  # RFC 5322 2.1.1: an ASCII word that cannot be folded must fit one line


def header_is_reserved(name: str) -> bool:
    """Headers the proxy builds itself (or from a field of its own): a custom one would fail the build."""
    lower = name.lower()
    return lower in RESERVED_HEADERS or lower.startswith("content-")


def _rfc5322_date(value: str) -> None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"header Date {value!r} is not an RFC 5322 date (Mon, 01 Jan 2024 10:00:00 +0100)") from exc
    if when.tzinfo is None and not value.rstrip().endswith("-0000"):  # -0000: UTC, zone unknown (RFC 5322 3.3)
        raise ValueError(f"header Date {value!r} has no time zone")


def _foldable(name: str, value: str, field: str) -> None:
    """The build folds ASCII values at spaces; a single word longer than a line can never be sent."""
    longest = _HARD_MAX_LINE - len(name) - 2
    if value.isascii() and any(len(word) > longest for word in value.split(" ")):
        raise ValueError(f"{field}: a word longer than {longest} characters cannot be folded into a header line")


_CONTENT_ID = re.compile(r"<?([!-;=?-~]{1,250})>?")


class Attachment(Strict):
    """A file sent with the message: its content travels inline (base64) or is fetched when sending."""

    filename: str = Field(min_length=1, max_length=255, description="the name shown to the recipient")
    storage_path: str = Field(min_length=1, description="the base64 data (fetch_mode base64), an http(s) URL, "
                              "an s3 location or a path for the tenant's attachment endpoint")
    fetch_mode: Literal["base64", "http_url", "s3", "endpoint"] | None = Field(
        default=None, description="how storage_path is read; default: guessed from storage_path")
    mime_type: str | None = Field(default=None, max_length=255, description="default: guessed from the filename; "
                                  "message/rfc822 (a forwarded message) is sent in 7bit/8bit, never base64")
    content_md5: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$",
                                    description="hex MD5 of the content, checked after fetching")
    content_id: str | None = Field(
        default=None, max_length=252, examples=["logo@example.com"],
        description="makes the attachment an inline part that the HTML body shows as <img src=\"cid:...\">: sent "
                    "as its Content-ID header, in a multipart/related part with the HTML; angle brackets optional")
    disposition: Literal["attachment", "inline"] | None = Field(
        default=None, description="Content-Disposition; default: inline with a content_id, else attachment")

    @field_validator("filename", "mime_type")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return _no_control(v, "attachment")

    @field_validator("content_id")
    @classmethod
    def _content_id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        found = _CONTENT_ID.fullmatch(v.strip())
        if not found or "<" in found.group(1) or ">" in found.group(1):
            raise ValueError("content_id must be printable ASCII without spaces, as in <img src=\"cid:logo\">")
        return found.group(1)


class MessageIn(Strict):
    """One message of ``add-messages``, validated on its own so one bad message never sinks the batch."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    id: MessageId
    tenant_id: TenantId | None = None
    account_id: AccountId
    from_: str = Field(alias="from")
    to: list[str] = Field(default_factory=list, description="recipients shown in To; a message needs at least "
                          "one recipient in to, cc or bcc. International domains are IDNA-encoded; a non-ASCII "
                          "local part needs a server offering SMTPUTF8")
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list, description="recipients in the envelope only, never in a header")
    reply_to: str | None = None
    return_path: str | None = None
    subject: str = Field(min_length=1, max_length=998)
    body: str = ""
    content_type: Literal["plain", "html"] = "plain"
    html_body: str | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, examples=[{"X-Campaign": "spring", "Date": "Mon, 01 Jan 2024 10:00:00 +0100"}],
        description="custom headers; not those built from the fields (From, To, Subject, Message-ID, Content-*, "
                    "...). Date (an RFC 5322 date with its zone) and Sender (one address) are carried as given")
    message_id: str | None = Field(default=None, max_length=998)
    attachments: list[Attachment] = Field(default_factory=list, max_length=100)
    priority: int | str | None = None
    deferred_ts: int | None = Field(default=None, ge=0)
    batch_code: str | None = Field(default=None, pattern=BATCH_CODE_PATTERN)
    unsubscribe: bool | None = Field(default=None, description="true: one-click unsubscribe headers (the message "
                                     "needs exactly one recipient); false: none even if the tenant's default")

    @model_validator(mode="before")
    @classmethod
    def _from_addr_alias(cls, data: Any) -> Any:
        return _alias(data, "from_addr", "from")

    @field_validator("from_", "return_path", mode="before")
    @classmethod
    def _mailbox(cls, v: Any, info: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str):
            raise ValueError("must be a string")
        field = "from" if info.field_name == "from_" else info.field_name
        try:
            return parse_mailbox(v, field=field)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _address_list(cls, v: Any, info: Any) -> Any:
        if v is None:
            return [] if info.field_name != "reply_to" else None
        if not isinstance(v, str | list):
            raise ValueError("must be a list of addresses or a comma-separated string")
        try:
            parsed = parse_address_list(v, field=info.field_name)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc
        if info.field_name == "reply_to":
            return ", ".join(parsed) or None
        return parsed

    @field_validator("subject", "message_id")
    @classmethod
    def _header(cls, v: str | None, info: Any) -> str | None:
        return _no_control(v, info.field_name)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid header field name")
            if header_is_reserved(name):
                raise ValueError(f"header {name!r} is set by the proxy from the message fields")
            _no_control(value, f"header {name}")
            _foldable(name, value, f"header {name!r}")
            if name.lower() == "date":
                _rfc5322_date(value)
            elif name.lower() == "sender":
                try:
                    parse_mailbox(value, field="header Sender")
                except AddressError as exc:
                    raise ValueError(str(exc)) from exc
        if len({name.lower() for name in v} & CHECKED_HEADERS) < len([n for n in v if n.lower() in CHECKED_HEADERS]):
            raise ValueError("headers Date and Sender may each be given once")
        return v

    @field_validator("message_id")
    @classmethod
    def _message_id(cls, v: str | None) -> str | None:
        if not v:
            return v
        found = _MESSAGE_ID.fullmatch(v.strip())
        if not found:
            raise ValueError("message_id must be of the form <left@right> (printable ASCII, no spaces)")
        _foldable("Message-ID", f"<{found.group(1) or found.group(2)}>", "message_id")
        return v

    @model_validator(mode="after")
    def _buildable(self) -> MessageIn:
        _foldable("Subject", self.subject, "subject")
        if self.html_body is not None and self.content_type == "html":
            raise ValueError("html_body is the HTML alternative of a plain body: content_type must be 'plain'")
        return self

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> Any:
        if v is None:
            return v
        return normalise_priority(v)

    @field_validator("deferred_ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        if isinstance(v, bool) or (v is not None and not isinstance(v, int)):
            if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
                v = int(v)
            else:
                raise ValueError("deferred_ts must be unix seconds (an integer)")
        if v is not None and v > clock.now_ts() + MAX_DEFER_SECONDS:
            raise ValueError(f"deferred_ts is more than {MAX_DEFER_SECONDS // 86400} days ahead")
        return v

    @model_validator(mode="after")
    def _recipient_count(self) -> MessageIn:
        count = len(self.to) + len(self.cc) + len(self.bcc)
        if count == 0:
            raise ValueError("at least one recipient is required in to, cc or bcc")
        if count > MAX_RECIPIENTS:
            raise ValueError(f"too many recipients: {count} in to, cc and bcc, at most {MAX_RECIPIENTS}")
        return self

    @model_validator(mode="after")
    def _unsubscribe(self) -> MessageIn:
        """An unsubscribe link names the one recipient who clicks it, and replaces the message's own."""
        if self.unsubscribe:
            if len(self.to) + len(self.cc) + len(self.bcc) != 1:
                raise ValueError("unsubscribe: the message must have exactly one recipient (the link names it)")
            if any(name.lower().startswith("list-unsubscribe") for name in self.headers):
                raise ValueError("unsubscribe: the proxy sets List-Unsubscribe; do not give it in headers too")
        return self

    def payload(self) -> dict[str, Any]:
        """The submitted fields as stored and shown back (``from``, not ``from_``)."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude={"tenant_id", "priority"})
        for empty in ("to", "cc", "bcc", "headers", "attachments"):
            if not data.get(empty):
                data.pop(empty, None)
        return data


_PATTERN_HINTS = {
    "id": "must be 1-128 printable characters without spaces",
    "account_id": "must be 1-128 characters of letters, digits and _.@+-",
    "tenant_id": "must be 1-64 characters of letters, digits, _ and -",
    "batch_code": "must be 1-64 printable characters without spaces",
}


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line for a rejected message: ``to: 'x' is not a valid e-mail address``."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if p != "from_") or "message"
        if err["loc"] and err["loc"][0] == "from_":
            loc = "from" + (("." + ".".join(str(p) for p in err["loc"][1:])) if len(err["loc"]) > 1 else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "string_pattern_mismatch":
            msg = _PATTERN_HINTS.get(loc, msg)
        parts.append(msg if msg.startswith(loc) else f"{loc}: {msg}")
    return "; ".join(parts)


class HistoryEvent(View):
    event_id: str
    event_type: str
    event_ts: int
    description: str | None = None
    metadata: dict[str, Any] | None = None
    reported_ts: int | None = None


class MessageRecord(View):
    id: str
    tenant_id: str
    account_id: str | None = None
    priority: int = DEFAULT_PRIORITY
    batch_code: str | None = None
    status: MessageStatus
    deferred_ts: int | None = None
    sent_ts: int | None = None
    smtp_ts: int | None = Field(default=None, description="the same as sent_ts (genro-mail-proxy's name)")
    error_ts: int | None = None
    error: str | None = None
    attempts: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    message: dict[str, Any] | None = None
    history: list[HistoryEvent] | None = None

    @model_validator(mode="after")
    def _smtp_ts(self) -> MessageRecord:
        self.smtp_ts = self.sent_ts
        return self
