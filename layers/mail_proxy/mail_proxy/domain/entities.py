"""Typed tenants and SMTP accounts: what the use cases read of them, as attributes (no AWS, no I/O).

The repository returns and accepts these. Each attribute is named as the value is stored, and ``None`` means
"never set" (a stored item never holds a null), so the repository turns an item into an entity and back
without losing or adding anything: attributes this module does not name travel in ``extra``.

Code reads attributes; ``stored()`` is the item's attributes by stored name, for the repository and the
key-rotation walker that follow stored paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

TlsMode = Literal["none", "starttls", "ssl"]


def _attribute_names(cls: type[Tenant] | type[Account] | type[_StoredView]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "extra")  # type: ignore[arg-type]


class _StoredView:
    """What the repository stores of an entity: its set values by stored name, ``extra`` included."""

    extra: Mapping[str, Any]

    def stored(self) -> dict[str, Any]:
        """The set attributes by stored name (``None`` ones are absent), then ``extra``."""
        values = {name: getattr(self, name) for name in _attribute_names(type(self))
                  if getattr(self, name) is not None}
        return {**values, **self.extra}


@dataclass(frozen=True, eq=True)
class Tenant(_StoredView):
    """A tenant: its configuration, its holds (suspension, reputation pause, suspended batches) and the
    bookkeeping of its report sync. Secrets are stored encrypted and stay so here."""

    tenant_id: str
    name: str | None = None
    active: bool | None = None  # None: never set, which means active
    created_at: str | None = None
    updated_at: str | None = None
    token_hash: str | None = None
    # delivery reports
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    client_auth: dict[str, Any] | None = None
    signing_secret: str | None = None
    previous_signing_secret: str | None = None
    previous_signing_valid_until: int | None = None
    previous_signing_secrets: list[dict[str, Any]] | None = None
    # sending
    rate_limits: dict[str, Any] | None = None
    large_file_config: dict[str, Any] | None = None
    s3_buckets: list[str] | None = None
    bounce_imap: dict[str, Any] | None = None
    return_path: str | None = None
    unsubscribe: dict[str, Any] | None = None
    dkim_keys: list[dict[str, Any]] | None = None
    has_suppressions: bool | None = None
    # holds
    suspended_batches: list[str] | None = None
    admin_suspended: bool | None = None
    admin_suspended_reason: str | None = None
    admin_suspended_at: str | None = None
    reputation_paused: bool | None = None
    reputation_paused_reason: str | None = None
    reputation_paused_at: str | None = None
    reputation_warning: str | None = None
    reputation_warning_at: str | None = None
    reputation_baseline: dict[str, Any] | None = None
    reputation_thresholds: dict[str, Any] | None = None
    # the report sync's bookkeeping
    last_sync_ts: int | None = None
    report_quiet_until: int | None = None
    report_attempts: int | None = None
    report_attempt_record: str | None = None
    report_hidden_receipt: str | None = None
    sync_pending: str | None = None
    sync_pending_ts: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        # never set: active; otherwise its truth (an item written by hand may hold 0 or "" for false)
        return self.active is None or bool(self.active)

    @property
    def suspended_batch_codes(self) -> frozenset[str]:
        """The suspended batch codes (``*``: every batch)."""
        return frozenset(self.suspended_batches or ())

    def batch_is_suspended(self, batch_code: str | None) -> bool:
        suspended = self.suspended_batch_codes
        return "*" in suspended or (batch_code is not None and batch_code in suspended)

    def is_sending(self, batch_code: str | None) -> bool:
        """Messages of an inactive tenant, a tenant suspended by an administrator or paused by the reputation
        guard, or a suspended batch wait; they are not queued."""
        return (self.is_active and not self.admin_suspended and not self.reputation_paused
                and not self.batch_is_suspended(batch_code))

    @property
    def reports_enabled(self) -> bool:
        """Delivery reports go to the tenant's client only when it has a base URL."""
        return bool(self.client_base_url)


@dataclass(frozen=True, eq=True)
class Account(_StoredView):
    """An SMTP account of a tenant (passwords stored encrypted, and so here). A PEC account also has the
    IMAP mailbox its receipts arrive in."""

    id: str
    tenant_id: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls: TlsMode | None = None  # None: never set, which means starttls
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_behavior: str | None = None  # "defer" (None) or "reject"
    is_pec: bool | None = None
    imap_host: str | None = None
    imap_port: int | None = None
    imap_user: str | None = None
    imap_password: str | None = None
    imap_folder: str | None = None
    imap_tls: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tls_mode(self) -> TlsMode:
        return self.tls or "starttls"

    @property
    def rejects_over_limit(self) -> bool:
        """Over its rate limit, a message fails (``reject``) instead of waiting for the next window."""
        return self.limit_behavior == "reject"

    def limit_per(self, window: str) -> int | None:
        """The limit of one window (``minute``, ``hour``, ``day``), or None."""
        value = {"minute": self.limit_per_minute, "hour": self.limit_per_hour, "day": self.limit_per_day}.get(window)
        return value if isinstance(value, int) else None


def entity_from_fields(cls: type[Tenant] | type[Account], values: Mapping[str, Any]) -> Any:
    """An entity from its stored attributes (the ones it does not name go to ``extra``; nulls are absent)."""
    names = set(_attribute_names(cls))
    known = {k: v for k, v in values.items() if k in names and v is not None}
    extra = {k: v for k, v in values.items() if k not in names and v is not None}
    return cls(**known, extra=extra)


def entity_fields(entity: Tenant | Account) -> dict[str, Any]:
    """The stored attributes of an entity (the inverse of ``entity_from_fields``)."""
    return entity.stored()
