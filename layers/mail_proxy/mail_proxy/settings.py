"""Settings read from the environment once per cold start, one class per function.

:class:`FunctionSettings` holds what every function reads; each function's class (``ApiSettings``,
``SenderSettings``, ...) adds what that function reads, from small groups shared by the functions that use
the same resource (the send queues, the report queue, the attachment bucket, ...). The variable names are the
template's (``template.yaml``) and the local stack's.

A missing required variable or a value of the wrong form (``MAX_BODY_BYTES=5MB``) is a
:class:`~mail_proxy.errors.ConfigurationError` at start-up that names the variable and what it expects, never
a silent default nor a bare ``ValueError`` later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mail_proxy.errors import ConfigurationError
from mail_proxy.security.address_guard import AddressPolicy, IpNetwork, parse_networks

PRIORITY_LANES = ("immediate", "high", "medium", "low")
SECRET_MAX_AGE_SECONDS = 300  # how long a read secret is used before it is read again (default)
S = TypeVar("S", bound="FunctionSettings")


class _Environment(BaseModel):
    """Read from the environment only (no .env file), by the names the template spells (each field's alias,
    exactly); an empty variable counts as unset. A plain pydantic model fed the variables it names: what
    pydantic-settings would do here, without its import at every cold start (about 30 ms)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def _from_environment(cls) -> dict[str, str]:
        names = (field.alias or name for name, field in cls.model_fields.items())
        return {name: value for name in names if (value := os.environ.get(name))}


def _seconds_list(value: str | None, what: str) -> str | None:
    """A comma-separated list of non-negative whole seconds (``"60, 300, 900"``), checked, kept as text."""
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"{what} must be a comma-separated list of non-negative whole seconds, e.g. 60,300,900")
    return value


# ---------------------------------------------------------------------------------------------------- groups


class FunctionSettings(_Environment):
    """What every function reads: the table and the secret that holds the encryption keys."""

    table_name: str = Field(alias="TABLE_NAME", description="the DynamoDB table name")
    secret_id: str | None = Field(default=None, alias="SECRET_ID",
                                  description="the Secrets Manager secret of the encryption keys")
    secret_max_age: int = Field(default=SECRET_MAX_AGE_SECONDS, ge=0, le=3600,
                                alias="MAIL_PROXY_SECRET_MAX_AGE_SECONDS",
                                description="whole seconds from 0 to 3600")

    @classmethod
    def from_env(cls: type[S]) -> S:
        """Read now (no cache); raises ConfigurationError naming the variable that is wrong."""
        try:
            return cls.model_validate(cls._from_environment())
        except ValidationError as exc:
            raise ConfigurationError(_describe(cls, exc)) from None


class _Loopback(_Environment):
    # true on the local stack and in tests only: hosts that resolve to loopback may be reached
    allow_loopback: bool = Field(default=False, alias="MAIL_PROXY_ALLOW_LOOPBACK",
                                 description="true or false")


class _Relays(_Loopback):
    """Functions that reach SMTP relays and IMAP servers that tenants name."""

    # SMTP relays and IMAP servers inside the VPC that accounts may name although their addresses are private
    allowed_relay_networks: tuple[IpNetwork, ...] = Field(
        default=(), alias="MAIL_PROXY_ALLOWED_RELAY_NETWORKS",
        description="networks in CIDR form, separated by commas (e.g. 10.20.0.0/16)")

    @field_validator("allowed_relay_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        return parse_networks(value) if isinstance(value, str) else value

    def relay_address_policy(self) -> AddressPolicy:
        """Where SMTP and IMAP hosts may resolve to: public addresses, the allowed relay networks, and
        loopback only with MAIL_PROXY_ALLOW_LOOPBACK (local stack and tests)."""
        return AddressPolicy(allow_loopback=self.allow_loopback, allowed_networks=self.allowed_relay_networks)


class _SendQueues(_Environment):
    send_queue_immediate_url: str | None = Field(default=None, alias="SEND_QUEUE_IMMEDIATE_URL")
    send_queue_high_url: str | None = Field(default=None, alias="SEND_QUEUE_HIGH_URL")
    send_queue_medium_url: str | None = Field(default=None, alias="SEND_QUEUE_MEDIUM_URL")
    send_queue_low_url: str | None = Field(default=None, alias="SEND_QUEUE_LOW_URL")

    @property
    def send_queue_urls(self) -> dict[int, str]:
        """The queue of each priority (0 immediate ... 3 low) that is configured."""
        urls = (getattr(self, f"send_queue_{lane}_url") for lane in PRIORITY_LANES)
        return {priority: url for priority, url in enumerate(urls) if url}


class _ReportQueue(_Environment):
    report_queue_url: str | None = Field(default=None, alias="REPORT_QUEUE_URL")


class _ParkedReports(_ReportQueue):
    report_parked_queue_url: str | None = Field(default=None, alias="REPORT_PARKED_QUEUE_URL")


class _Attachments(_Environment):
    attachment_bucket: str | None = Field(default=None, alias="ATTACHMENT_BUCKET")


class _Payloads(_Attachments):
    payload_inline_max_bytes: int = Field(default=16 * 1024, ge=0, alias="PAYLOAD_INLINE_MAX_BYTES",
                                          description="a whole number of bytes")


class _Suppressions(_Environment):
    suppression_days: int = Field(default=365, ge=1, alias="MAIL_PROXY_SUPPRESSION_DAYS",
                                  description="a whole number of days, at least 1")


# ------------------------------------------------------------------------------------------------ functions


class AuthorizerSettings(FunctionSettings):
    admin_secret_id: str | None = Field(default=None, alias="ADMIN_SECRET_ID",
                                        description="the Secrets Manager secret of the admin token")


class ApiSettings(AuthorizerSettings, _Relays, _SendQueues, _ParkedReports, _Payloads, _Suppressions):
    idempotency_table_name: str | None = Field(default=None, alias="IDEMPOTENCY_TABLE_NAME")
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0, alias="MAX_BODY_BYTES",
                                description="a whole number of bytes, more than 0")
    # GET /metrics without a token (template parameter MetricsPublic)
    metrics_public: bool = Field(default=False, alias="METRICS_PUBLIC", description="true or false")


class SenderSettings(FunctionSettings, _Relays, _SendQueues, _Payloads):
    smtp_timeout: float = Field(default=20.0, gt=0, alias="SMTP_TIMEOUT_SECONDS", description="seconds, more than 0")
    smtp_ca_file: str | None = Field(default=None, alias="MAIL_PROXY_SMTP_CA_FILE")
    retry_delays: str | None = Field(default=None, alias="MAIL_PROXY_RETRY_DELAYS")
    public_api_url: str | None = Field(default=None, alias="PUBLIC_API_URL")

    @field_validator("retry_delays")
    @classmethod
    def _retry_delays(cls, value: str | None) -> str | None:
        return _seconds_list(value, "retry delays")


class SchedulerSettings(FunctionSettings, _SendQueues, _ReportQueue):
    pass


class ReportRouterSettings(FunctionSettings, _ReportQueue, _Attachments):
    pass


class ReporterSettings(FunctionSettings, _Loopback, _ParkedReports):
    report_backoff: str | None = Field(default=None, alias="MAIL_PROXY_REPORT_BACKOFF_SECONDS")

    @field_validator("report_backoff")
    @classmethod
    def _report_backoff(cls, value: str | None) -> str | None:
        return _seconds_list(value, "report backoff")


class BouncePollerSettings(FunctionSettings, _Relays, _Suppressions):
    imap_timeout: float = Field(default=10.0, gt=0, alias="IMAP_TIMEOUT_SECONDS", description="seconds, more than 0")
    imap_ca_file: str | None = Field(default=None, alias="MAIL_PROXY_IMAP_CA_FILE")
    pec_acceptance_timeout: int = Field(default=1800, ge=60, alias="MAIL_PROXY_PEC_ACCEPTANCE_TIMEOUT_SECONDS",
                                        description="whole seconds, at least 60")


class Settings(ApiSettings, SenderSettings, SchedulerSettings, ReportRouterSettings, ReporterSettings,
               BouncePollerSettings):
    """Every function's settings in one: for code that serves several functions (the operator's command
    line, wiring that has not named its function). A function's own code asks for its own class."""


# --------------------------------------------------------------------------------------------------- errors


def _describe(kind: type[_Environment], exc: ValidationError) -> str:
    """``environment variable MAX_BODY_BYTES: expected a whole number of bytes ... (got '5MB')``, one line per
    wrong variable; the value is shown for a wrong one (none of these settings is a secret)."""
    names = {(field.alias or name): field for name, field in kind.model_fields.items()}
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = names.get(name)
        expected = field.description if field is not None and field.description else ""
        if error["type"] == "missing":
            lines.append(f"environment variable {name} is not set" + (f" ({expected})" if expected else ""))
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        hint = f"; expected {expected}" if expected and expected not in message else ""
        lines.append(f"environment variable {name}: {message}{hint} (got {str(error.get('input'))[:80]!r})")
    return "; ".join(lines)


# --------------------------------------------------------------------------------------------------- access

_scope: ContextVar[str] = ContextVar("mail_proxy_settings_scope", default="")


@overload
def get_settings() -> Settings: ...


@overload
def get_settings(kind: type[S]) -> S: ...


def get_settings(kind: type[FunctionSettings] = Settings) -> FunctionSettings:
    """The settings of the running function (``kind``: its class, or a group's), read once per cold start.

    In AWS a process runs one function, so there is one scope. The local stack runs every function in one
    process and names the running one with `settings_scope`, so each reads its own environment.
    """
    return _settings(_scope.get(), kind)


@lru_cache(maxsize=64)
def _settings(scope: str, kind: type[FunctionSettings]) -> FunctionSettings:
    return kind.from_env()


@contextmanager
def settings_scope(name: str) -> Iterator[None]:
    """Settings read inside the block are cached under `name` (one function of the local stack)."""
    token = _scope.set(name)
    try:
        yield
    finally:
        _scope.reset(token)


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    _settings.cache_clear()
