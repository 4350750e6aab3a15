"""Domain models and rules of tenants, accounts and messages (pure: no AWS, no I/O).

Input models forbid unknown fields: a typo such as ``defered_ts`` must be an error, not a message sent
at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mail_proxy.domain import clock
from mail_proxy.errors import InvalidInputError
from mail_proxy.mail.addresses import (
    AddressError,
    check_addr_spec,
    check_header_value,
    check_host,
    parse_address_list,
    parse_mailbox,
)
from mail_proxy.security.address_guard import AddressPolicy, HostNotAllowed

TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.@+-]{1,128}$"
MESSAGE_ID_PATTERN = r"^[!-~]{1,128}$"  # printable ASCII, no spaces: it travels in X-Mail-Proxy-ID
BATCH_CODE_PATTERN = r"^[!-~]{1,64}$"
MAX_MESSAGES_PER_CALL = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc of one message: its outcome must always fit one small write
RETENTION_SECONDS = 7 * 24 * 3600  # a final message is kept this long after its report (or outcome, without one)
MAX_DEFER_SECONDS = 30 * 24 * 3600  # deferred_ts at most this far ahead: stored content outlives it
SMTP_PORT_BLOCKED_IN_LAMBDA = 25

TenantId = Annotated[str, Field(pattern=TENANT_ID_PATTERN, description="[A-Za-z0-9_-]{1,64}")]
AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
MessageId = Annotated[str, Field(pattern=MESSAGE_ID_PATTERN, description="1-128 printable characters")]


class View(BaseModel):
    """Answers of the API; built on first use like every model here."""

    model_config = ConfigDict(defer_build=True)


class Strict(BaseModel):
    # schemas are built on first use, not at import: a cold start pays only for the models it touches
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


class Role(StrEnum):
    ADMIN = "admin"
    TENANT = "tenant"
    ANONYMOUS = "anonymous"


class MessageStatus(StrEnum):
    PENDING = "pending"
    DEFERRED = "deferred"
    SENDING = "sending"
    SENT = "sent"
    ERROR = "error"
    BOUNCED = "bounced"


WAITING_STATUSES = frozenset({MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.SENDING})
FINAL_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.ERROR, MessageStatus.BOUNCED})
PRIORITY_LABELS = {"immediate": 0, "high": 1, "medium": 2, "low": 3}
DEFAULT_PRIORITY = 2


def batch_is_suspended(tenant: dict[str, Any], batch_code: str | None) -> bool:
    suspended = set(tenant.get("suspended_batches") or [])
    return "*" in suspended or (batch_code is not None and batch_code in suspended)


def tenant_is_sending(tenant: dict[str, Any], batch_code: str | None) -> bool:
    """Messages of an inactive tenant, a tenant suspended by an administrator or paused by the reputation
    guard, or a suspended batch wait; they are not queued."""
    return (bool(tenant.get("active", True)) and not tenant.get("admin_suspended")
            and not tenant.get("reputation_paused") and not batch_is_suspended(tenant, batch_code))


TENANT_SUSPENDED_DETAIL = "tenant suspended by an administrator"


def normalise_priority(value: object, default: int = DEFAULT_PRIORITY) -> int:
    """0-3 or a label; anything else is an error (not silently clamped)."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("priority must be 0-3 or one of immediate, high, medium, low")
    if isinstance(value, int) and 0 <= value <= 3:
        return value
    if isinstance(value, str) and value.strip().lower() in PRIORITY_LABELS:
        return PRIORITY_LABELS[value.strip().lower()]
    if isinstance(value, str) and value.strip() in {"0", "1", "2", "3"}:
        return int(value.strip())
    raise ValueError(f"priority {value!r} is not 0-3 or one of immediate, high, medium, low")


def _no_control(value: str | None, field: str) -> str | None:
    if value is not None:
        try:
            check_header_value(value, field=field)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _alias(data: Any, alias: str, name: str) -> Any:
    """genro-mail-proxy's field name ``alias`` accepted for ``name``; both given and different is an error."""
    if not isinstance(data, dict) or alias not in data:
        return data
    data = dict(data)
    value = data.pop(alias)
    if name in data and data[name] != value:
        raise ValueError(f"{alias} and {name} name the same field and differ")
    data[name] = value
    return data


def _url(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    _no_control(value, field)
    if not re.fullmatch(r"https?://[^\s/?#]+\S*", value):
        raise ValueError(f"{field} must be an http(s) URL")
    return value.rstrip("/")


# --------------------------------------------------------------------------------------------- tenants


class ClientAuth(Strict):
    """How the proxy authenticates to the tenant's application (reports, attachment endpoint)."""

    method: Literal["none", "bearer", "basic"] = "none"
    token: str | None = Field(default=None, max_length=4096)
    user: str | None = Field(default=None, max_length=256)
    password: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _complete(self) -> ClientAuth:
        if self.method == "bearer" and not self.token:
            raise ValueError("client_auth method 'bearer' needs a token")
        if self.method == "basic" and (not self.user or self.password is None):
            raise ValueError("client_auth method 'basic' needs user and password")
        for name in ("token", "user", "password"):
            _no_control(getattr(self, name), f"client_auth.{name}")
        return self


class RateLimits(Strict):
    per_minute: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)


class LargeFileConfig(Strict):
    """Attachments above ``max_size_mb``: ``warn`` (send as is), ``reject`` (fail), ``rewrite`` (download links)."""

    enabled: bool = False
    max_size_mb: float = Field(default=10.0, gt=0, le=100)
    action: Literal["warn", "reject", "rewrite"] = "warn"
    file_ttl_days: int = Field(default=30, ge=1, le=90)


class UnsubscribeConfig(Strict):
    """One-click unsubscribe (RFC 8058) for the tenant's messages: which get the ``List-Unsubscribe`` headers,
    what a click suppresses, and the tenant's own ``mailto:`` alternative."""

    default: bool = Field(default=False, description="every message with one recipient gets the headers unless "
                                                      "it says \"unsubscribe\": false")
    per_batch: bool = Field(default=False, description="a click suppresses the address for the message's "
                                                        "batch_code (the list) only; messages without one: all")
    mailto: str | None = Field(default=None, max_length=254,
                               description="an address of the tenant's that also takes unsubscribe requests")

    @field_validator("mailto")
    @classmethod
    def _mailto(cls, v: str | None) -> str | None:
        return _bare_address(v, "mailto")


def _host_name(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return check_host(value, field=field)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


def check_literal_host(host: str | None, policy: AddressPolicy, loc: Sequence[str]) -> None:
    """A host written as an address (``10.0.0.5``, ``[::1]``, ``2130706433``, ``0x7f.1``) that the policy
    refuses is refused when it is saved (422), not only when it is connected to; names are checked then."""
    if not host:
        return
    try:
        policy.check_literal(host)
    except HostNotAllowed as exc:
        raise InvalidInputError([{"loc": list(loc), "msg": str(exc), "type": "value_error"}]) from exc


def _bare_address(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check_addr_spec(value.strip(), field=field)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


class BounceMailbox(Strict):
    """The IMAP mailbox where a tenant's bounces arrive; the password is stored encrypted, never shown."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=993, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=320)
    password: str | None = Field(default=None, max_length=1024)
    folder: str = Field(default="INBOX", min_length=1, max_length=200)
    tls: Literal["ssl", "starttls", "none"] = "ssl"

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _host_name(v, "host") or v

    @field_validator("user", "password", "folder")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return _no_control(v, "bounce_imap")


class MailboxView(BaseModel):
    host: str
    port: int
    user: str | None = None
    folder: str = "INBOX"
    tls: str = "ssl"
    has_password: bool = False


MIN_RATE = 0.00001  # a threshold below 0.001% means nothing, and DynamoDB numbers end at 1E-130


class ReputationThresholds(Strict):
    """When the reputation guard warns about a tenant and when it pauses its sending (SES-like defaults).

    Rates are hard bounces and complaints per message sent, over the tenant's last ``window_hours`` hours;
    nothing is judged before ``min_sends`` messages were sent in that window, and a rate only from ``min_events``
    hard bounces (or complaints) on. Only an administrator sets them.
    """

    bounce_warn: float = Field(default=0.05, ge=MIN_RATE, le=1, description="hard-bounce rate that raises a warning")
    bounce_pause: float = Field(default=0.10, ge=MIN_RATE, le=1, description="hard-bounce rate that pauses sending")
    complaint_warn: float = Field(default=0.001, ge=MIN_RATE, le=1, description="complaint rate that raises a warning")
    complaint_pause: float = Field(default=0.005, ge=MIN_RATE, le=1, description="complaint rate that pauses sending")
    min_sends: int = Field(default=100, ge=1, le=1_000_000, description="messages sent in the window before "
                                                                          "any rate is judged")
    min_events: int = Field(default=3, ge=1, le=1000, description="hard bounces (or complaints) in the window "
                                                                  "before their rate is judged: one or two "
                                                                  "reports, which a single recipient can send, "
                                                                  "never warn about or pause a tenant")
    window_hours: int = Field(default=24, ge=1, le=168, description="the rolling window, in whole hours")
    pause: bool = Field(default=True, description="false: the guard only warns")

    @model_validator(mode="after")
    def _ordered(self) -> ReputationThresholds:
        if self.bounce_warn > self.bounce_pause or self.complaint_warn > self.complaint_pause:
            raise ValueError("a warn threshold must not be above its pause threshold")
        return self


class ReputationRates(View):
    sent: int = Field(description="messages sent in the window")
    bounced: int = Field(description="hard bounces recorded in the window")
    complained: int = Field(description="complaints recorded in the window")
    bounce_rate: float
    complaint_rate: float


class ReputationView(View):
    """The reputation guard's state for a tenant, and its rates over the window (``GET /tenant/{id}``)."""

    state: Literal["ok", "warning", "paused"]
    paused_reason: str | None = Field(default=None, description="why sending is paused (until an "
                                                                "administrator's POST /tenant/{id}/resume)")
    paused_at: str | None = None
    warning: str | None = Field(default=None, description="the threshold crossed, while above a warn threshold")
    thresholds: ReputationThresholds
    judged: bool = Field(default=False, description="the window holds at least min_sends messages sent")
    rates: ReputationRates | None = Field(default=None, description="the tenant's rates over the window")
    accounts: dict[str, ReputationRates] = Field(default_factory=dict, description="rates per SMTP account")


class TenantFields(Strict):
    name: str | None = Field(default=None, max_length=200)
    client_base_url: str | None = Field(default=None, max_length=2048)
    client_sync_path: str | None = Field(default=None, max_length=512)
    client_attachment_path: str | None = Field(default=None, max_length=512)
    client_auth: ClientAuth | None = None
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    s3_buckets: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]] | None = Field(
        default=None, max_length=20, description="buckets the tenant's s3 attachments may come from (admin only)")
    active: bool | None = None
    bounce_imap: BounceMailbox | None = Field(default=None, description="IMAP mailbox polled for bounces")
    return_path: str | None = Field(default=None, max_length=254,
                                    description="envelope sender of messages that give none (the bounce address)")
    unsubscribe: UnsubscribeConfig | None = Field(default=None, description="one-click unsubscribe links")
    reputation_thresholds: ReputationThresholds | None = Field(
        default=None, description="when the reputation guard warns and pauses (admin only; default: SES-like)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return _no_control(v, "name")

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, v: str | None) -> str | None:
        return _bare_address(v, "return_path")

    @field_validator("client_base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        return _url(v, "client_base_url")

    @field_validator("client_sync_path", "client_attachment_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _no_control(v, "path")
        if not v.startswith("/"):
            raise ValueError("paths must start with '/'")
        return v


class TenantCreate(TenantFields):
    tenant_id: TenantId = Field(description="[A-Za-z0-9_-]{1,64}; genro-mail-proxy's name for it, id, is accepted")
    token: str | None = Field(default=None, min_length=16, max_length=256, description="the tenant's API token")
    active: bool | None = True

    @model_validator(mode="before")
    @classmethod
    def _id_alias(cls, data: Any) -> Any:
        return _alias(data, "id", "tenant_id")

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and (v.strip() != v or _no_control(v, "token") is None or " " in v):
            raise ValueError("token must not contain spaces or control characters")
        return v


class TenantUpdate(TenantFields):
    """Any tenant field but ``tenant_id`` (and the token: use the api-key routes)."""


class TenantSuspension(Strict):
    """An administrator's suspension: unlike ``active`` (the tenant's own switch), only an administrator
    lifts it, and the tenant's token is refused meanwhile."""

    reason: str | None = Field(default=None, max_length=500, description="shown to the administrator")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        return _no_control(v, "reason")


class ClientAuthView(View):
    method: str
    user: str | None = None
    has_token: bool = False
    has_password: bool = False


class TenantView(View):
    tenant_id: str
    id: str | None = Field(default=None, description="the same as tenant_id (genro-mail-proxy's name)")
    name: str | None = None
    active: bool = True
    client_base_url: str | None = None
    client_sync_path: str = "/mail-proxy/sync"
    client_attachment_path: str = "/mail-proxy/attachments"
    client_auth: ClientAuthView | None = None
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    s3_buckets: list[str] = Field(default_factory=list)
    bounce_imap: MailboxView | None = None
    return_path: str | None = None
    unsubscribe: UnsubscribeConfig | None = None
    suspended_batches: list[str] = Field(default_factory=list)
    admin_suspended: bool = Field(default=False, description="suspended by an administrator (POST "
                                  "/tenant/{id}/suspend): its token is refused and its messages wait")
    admin_suspended_reason: str | None = None
    admin_suspended_at: str | None = None
    reputation: ReputationView | None = Field(default=None, description="the reputation guard: state, "
                                              "thresholds, and (for one tenant) its rates")
    has_api_key: bool = False
    created_at: str | None = None
    updated_at: str | None = None

    @model_validator(mode="after")
    def _same_id(self) -> TenantView:
        self.id = self.tenant_id
        return self


# -------------------------------------------------------------------------------------------- accounts


class AccountCreate(Strict):
    id: AccountId
    tenant_id: TenantId | None = None
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    user: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, max_length=1024)
    tls: Literal["none", "starttls", "ssl"] | None = None
    limit_per_minute: int | None = Field(default=None, ge=0)
    limit_per_hour: int | None = Field(default=None, ge=0)
    limit_per_day: int | None = Field(default=None, ge=0)
    limit_behavior: Literal["defer", "reject"] = "defer"
    # Accepted for compatibility with genro-mail-proxy clients:
    use_tls: bool | None = Field(default=None, description="legacy: true → ssl on 465 else starttls")
    ttl: int | None = Field(default=None, description="legacy, ignored")
    batch_size: int | None = Field(default=None, ge=1, le=1000, description="legacy, ignored")
    # PEC (Italian certified mail): receipts are read from the account's own IMAP mailbox
    is_pec: bool = False
    is_pec_account: bool | None = Field(default=None, description="legacy name of is_pec")
    imap_host: str | None = Field(default=None, max_length=253)
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_user: str | None = Field(default=None, max_length=320, description="default: user")
    imap_password: str | None = Field(default=None, max_length=1024, description="default: password")
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=200)
    imap_tls: Literal["ssl", "starttls", "none"] = "ssl"

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _host_name(v, "host") or v

    @field_validator("user", "password", "imap_user", "imap_password", "imap_folder")
    @classmethod
    def _no_crlf(cls, v: str | None) -> str | None:
        return _no_control(v, "credentials")

    @field_validator("imap_host")
    @classmethod
    def _imap_host(cls, v: str | None) -> str | None:
        return _host_name(v, "imap_host")

    @model_validator(mode="after")
    def _pec_mailbox(self) -> AccountCreate:
        if self.is_pec_account is not None and "is_pec" not in self.model_fields_set:
            self.is_pec = self.is_pec_account
        if self.is_pec and not self.imap_host:
            raise ValueError("a PEC account (is_pec) needs imap_host: its receipts are read from that mailbox")
        if not self.is_pec and self.imap_host:
            raise ValueError("imap_host is only used by PEC accounts (set is_pec)")
        return self

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if v == SMTP_PORT_BLOCKED_IN_LAMBDA:
            raise ValueError(
                "port 25 is blocked for outbound traffic from AWS Lambda; use 587 (tls 'starttls') "
                "or 465 (tls 'ssl')"
            )
        return v

    def tls_mode(self) -> str:
        if self.tls is not None:
            return self.tls
        if self.use_tls is False:
            return "none"
        if self.use_tls is True or self.port == 465:
            return "ssl" if self.port == 465 else "starttls"
        return "starttls"


class AccountView(View):
    id: str
    tenant_id: str
    host: str
    port: int
    user: str | None = None
    tls: str
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_behavior: str = "defer"
    has_password: bool = False
    is_pec: bool = False
    imap: MailboxView | None = Field(default=None, description="the PEC receipts mailbox")
    created_at: str | None = None
    updated_at: str | None = None


# ---------------------------------------------------------------------------------------- suppressions


class SuppressionCreate(Strict):
    """An address the tenant's messages must not be sent to (until ``expires_ts``, if given)."""

    tenant_id: TenantId | None = None
    address: str = Field(min_length=3, max_length=254)
    reason: str | None = Field(default=None, max_length=500)
    expires_ts: int | None = Field(default=None, ge=0, description="unix seconds; default: the retention period")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _bare_address(v, "address") or v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        return _no_control(v, "reason")


class SuppressionView(BaseModel):
    address: str
    reason: str | None = None
    source: str = Field(description="manual, hard_bounce, unsubscribe, or complaint")
    created_ts: int
    expires_ts: int | None = None
    message_id: str | None = Field(default=None, description="the message bounced, complained about, or "
                                                             "unsubscribed from")
    lists: list[str] | None = Field(default=None, description="suppressed only for messages of these batch codes "
                                                              "(an unsubscribe from one list); absent: all")


# -------------------------------------------------------------------------------------------- messages

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
