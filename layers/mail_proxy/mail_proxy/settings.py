"""Settings read from the environment once per cold start.

A missing required variable is a clear start-up error naming the variable, never a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from pydantic import BaseModel, Field

from mail_proxy.errors import ConfigurationError
from mail_proxy.security.address_guard import AddressPolicy, IpNetwork, parse_networks

PRIORITY_LANES = ("immediate", "high", "medium", "low")


class Settings(BaseModel):
    table_name: str
    idempotency_table_name: str | None = None
    secret_id: str | None = None
    secret_max_age: int = Field(default=300, ge=0, le=3600)
    admin_secret_id: str | None = None
    send_queue_urls: dict[int, str] = Field(default_factory=dict)
    max_body_bytes: int = 5 * 1024 * 1024
    local_mode: bool = False
    allow_loopback: bool = False
    stage: str = "dev"
    smtp_timeout: float = 20.0
    smtp_ca_file: str | None = None
    retry_delays: str | None = None
    report_queue_url: str | None = None
    report_parked_queue_url: str | None = None
    report_backoff: str | None = None
    attachment_bucket: str | None = None
    payload_inline_max_bytes: int = 16 * 1024
    public_api_url: str | None = None
    suppression_days: int = Field(default=365, ge=1)
    pec_acceptance_timeout: int = Field(default=1800, ge=60)
    imap_timeout: float = Field(default=10.0, gt=0)
    imap_ca_file: str | None = None
    # SMTP relays and IMAP servers inside the VPC that accounts may name although their addresses are private
    allowed_relay_networks: tuple[IpNetwork, ...] = ()

    def relay_address_policy(self) -> AddressPolicy:
        """Where SMTP and IMAP hosts may resolve to: public addresses, the allowed relay networks, and
        loopback only with MAIL_PROXY_ALLOW_LOOPBACK (local stack and tests)."""
        return AddressPolicy(allow_loopback=self.allow_loopback, allowed_networks=self.allowed_relay_networks)

    @classmethod
    def from_env(cls) -> Settings:
        table = os.environ.get("TABLE_NAME")
        if not table:
            raise ConfigurationError("environment variable TABLE_NAME is not set (the DynamoDB table name)")
        queues: dict[int, str] = {}
        for priority, lane in enumerate(PRIORITY_LANES):
            url = os.environ.get(f"SEND_QUEUE_{lane.upper()}_URL")
            if url:
                queues[priority] = url
        return cls(
            table_name=table,
            idempotency_table_name=os.environ.get("IDEMPOTENCY_TABLE_NAME") or None,
            secret_id=os.environ.get("SECRET_ID") or None,
            secret_max_age=int(os.environ.get("MAIL_PROXY_SECRET_MAX_AGE_SECONDS") or 300),
            admin_secret_id=os.environ.get("ADMIN_SECRET_ID") or None,
            send_queue_urls=queues,
            max_body_bytes=int(os.environ.get("MAX_BODY_BYTES", 5 * 1024 * 1024)),
            local_mode=_flag("MAIL_PROXY_LOCAL"),
            allow_loopback=_flag("MAIL_PROXY_ALLOW_LOOPBACK"),
            stage=os.environ.get("STAGE", "dev"),
            smtp_timeout=float(os.environ.get("SMTP_TIMEOUT_SECONDS", 20)),
            smtp_ca_file=os.environ.get("MAIL_PROXY_SMTP_CA_FILE") or None,
            retry_delays=os.environ.get("MAIL_PROXY_RETRY_DELAYS") or None,
            report_queue_url=os.environ.get("REPORT_QUEUE_URL") or None,
            report_parked_queue_url=os.environ.get("REPORT_PARKED_QUEUE_URL") or None,
            report_backoff=os.environ.get("MAIL_PROXY_REPORT_BACKOFF_SECONDS") or None,
            attachment_bucket=os.environ.get("ATTACHMENT_BUCKET") or None,
            payload_inline_max_bytes=int(os.environ.get("PAYLOAD_INLINE_MAX_BYTES", 16 * 1024)),
            public_api_url=os.environ.get("PUBLIC_API_URL") or None,
            suppression_days=int(os.environ.get("MAIL_PROXY_SUPPRESSION_DAYS") or 365),
            pec_acceptance_timeout=int(os.environ.get("MAIL_PROXY_PEC_ACCEPTANCE_TIMEOUT_SECONDS") or 1800),
            imap_timeout=float(os.environ.get("IMAP_TIMEOUT_SECONDS") or 10),
            imap_ca_file=os.environ.get("MAIL_PROXY_IMAP_CA_FILE") or None,
            allowed_relay_networks=_networks("MAIL_PROXY_ALLOWED_RELAY_NETWORKS"),
        )


def _networks(name: str) -> tuple[IpNetwork, ...]:
    try:
        return parse_networks(os.environ.get(name))
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} must list networks in CIDR form, "
                                 f"separated by commas (e.g. 10.20.0.0/16): {exc}") from exc


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


_scope: ContextVar[str] = ContextVar("mail_proxy_settings_scope", default="")


def get_settings() -> Settings:
    """The settings of the running function, read once per cold start.

    In AWS a process runs one function, so there is one scope. The local stack runs every function in one
    process and names the running one with `settings_scope`, so each reads its own environment.
    """
    return _settings(_scope.get())


@lru_cache(maxsize=16)
def _settings(scope: str) -> Settings:
    return Settings.from_env()


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
