"""Tenants: their settings (client auth, rate limits, large files, unsubscribe, bounce mailbox, reputation
thresholds), the views the API answers with, and the suppression list (pure: no AWS, no I/O)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from mail_proxy.domain.models import Strict, TenantId, View, _alias, _bare_address, _host_name, _no_control, _url


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
