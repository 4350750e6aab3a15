"""SMTP accounts a tenant sends through: what is accepted when one is saved, and how it is shown (pure: no
AWS, no I/O)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mail_proxy.domain.models import (
    SMTP_PORT_BLOCKED_IN_LAMBDA,
    AccountId,
    Strict,
    TenantId,
    View,
    _host_name,
    _no_control,
)
from mail_proxy.domain.tenant_models import MailboxView


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
