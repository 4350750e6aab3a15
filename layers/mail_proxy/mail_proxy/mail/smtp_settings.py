"""How to reach and log in to one SMTP account (``SmtpSettings``). Pure: no AWS, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from mail_proxy.security.address_guard import AddressPolicy

TlsMode = Literal["ssl", "starttls", "none"]
_TLS_MODES = ("ssl", "starttls", "none")
# Keys fingerprints of passwords for this process only: a fingerprint is useless anywhere else.
_PROCESS_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach and log in to one SMTP account. ``repr`` never shows the password.

    Login happens only when both ``user`` and ``password`` are set. ``timeout`` (seconds) bounds every
    call (open, send) in total, well inside a Lambda's run time. ``verify_tls`` checks the server's
    certificate and host name against ``ca_file`` (or the system's CAs). ``address_policy`` says which
    addresses the host may resolve to (public only, by default).
    """

    host: str
    port: int
    tls: TlsMode = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 20.0
    local_hostname: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)

    def __post_init__(self) -> None:
        if self.tls not in _TLS_MODES:
            raise ValueError(f"tls must be one of {_TLS_MODES}, not {self.tls!r}")
        if not self.host:
            raise ValueError("host is required")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")

    @property
    def has_credentials(self) -> bool:
        return bool(self.user) and self.password is not None

    @cached_property
    def fingerprint(self) -> tuple[object, ...]:
        """Identifies the connection these settings open; holds a keyed hash of the password, never
        the password, so a connection is not reused after a password change."""
        password_digest = (
            None
            if self.password is None
            else hmac.new(_PROCESS_KEY, self.password.encode(), hashlib.sha256).hexdigest()
        )
        return (
            self.host.lower(),
            self.port,
            self.tls,
            self.user,
            password_digest,
            self.verify_tls,
            self.ca_file,
            self.local_hostname,
            self.timeout,
            self.address_policy,
        )
