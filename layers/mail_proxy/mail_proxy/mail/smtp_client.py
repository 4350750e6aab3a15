"""SMTP delivery over one reusable connection, with every failure classified as temporary or permanent.

A pure library over :mod:`smtplib` (no AWS). One message costs the round trips of MAIL, RCPT (one per
recipient) and DATA, or two in all when the server offers PIPELINING (RFC 2920); nothing else is sent
per message. Connections live in a :class:`ConnectionCache` across warm Lambda invocations and are
checked (a free socket poll always, a NOOP only after a few idle seconds) before reuse.

Classification happens in one place, :func:`classify_smtp_failure`:

* temporary (:class:`SmtpTemporaryError`, retry later): 4xx replies, timeouts, refused/reset/dropped
  connections (also a connection dropped during DATA: the message may or may not have been accepted;
  SMTP cannot tell, so it is retried), and every recipient refused when at least one refusal is 4xx
  (a retry can still reach those).
* permanent (:class:`SmtpPermanentError`, fail now): 5xx replies, authentication failures, TLS and
  certificate failures, a server without STARTTLS in ``starttls`` mode, every recipient refused with
  5xx, a malformed envelope, a message over the server's SIZE, a host the address guard refuses, a
  message that needs SMTPUTF8 (a UTF-8 address in the envelope or the headers) at a server without it.

The host goes through :mod:`mail_proxy.security.address_guard` (resolved once, private/reserved addresses refused
unless the settings' ``address_policy`` allows them, the socket connected to the checked address, TLS
checked against the name), and every call (``open``, ``send``, NOOP, QUIT) ends by a total deadline: the
caller's, capped by ``timeout`` seconds. A server that trickles its answer cannot hold the caller longer.

When some recipients are refused and at least one is accepted, the message is sent: the refusals are
in :attr:`SendOutcome.refused` (a 4xx-refused recipient of a sent message is not retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

from mail_proxy.errors import DeliveryError
from mail_proxy.security.address_guard import (
    NOT_ALLOWED,
    AddressPolicy,
    DeadlineExceeded,
    DeadlineTLSContext,
    HostNotAllowed,
    connect,
    connect_name,
    deadline_after,
    set_deadline,
    tls_client_context,
)

__all__ = [
    "ConnectionCache",
    "SendOutcome",
    "SmtpConnection",
    "SmtpDeliveryError",
    "SmtpPermanentError",
    "SmtpSettings",
    "SmtpTemporaryError",
    "TlsMode",
    "classify_smtp_failure",
]

TlsMode = Literal["ssl", "starttls", "none"]
_TLS_MODES = ("ssl", "starttls", "none")
_MAX_REASON = 500
_QUIT_TIMEOUT = 2.0
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_UNSAFE_IN_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")
# Keys fingerprints of passwords for this process only: a fingerprint is useless anywhere else.
_PROCESS_KEY = secrets.token_bytes(32)


# --- settings -------------------------------------------------------------------------------------


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


# --- errors ---------------------------------------------------------------------------------------


class SmtpDeliveryError(DeliveryError):
    """A delivery attempt failed. ``reason`` is short and fit for the message's ``error`` field
    (e.g. ``"550 5.1.1 user unknown"``); ``code``/``reply`` are the server's, when it answered."""

    temporary: bool = False

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        reply: str = "",
        refused: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        reason = " ".join(reason.split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.reply = reply
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class SmtpTemporaryError(SmtpDeliveryError):
    """May succeed later: retry with backoff."""

    temporary = True


class SmtpPermanentError(SmtpDeliveryError):
    """Can never succeed as it is: fail the message now."""

    temporary = False


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def _by_code(code: int, reply: bytes | str, prefix: str = "") -> SmtpDeliveryError:
    text = _text(reply)
    reason = f"{prefix}{code} {text}".strip()
    if 500 <= code < 600:
        return SmtpPermanentError(reason, code=code, reply=text)
    # 4xx, and anything a server should not have answered: assume the next attempt can succeed.
    return SmtpTemporaryError(reason, code=code, reply=text)


def classify_smtp_failure(exc: BaseException) -> SmtpDeliveryError:
    """The one place that decides whether a failure is temporary or permanent (see the module doc).

    Accepts what :mod:`smtplib`, :mod:`ssl` and :mod:`socket` raise (also from a plain
    ``smtplib.SMTP.sendmail``); returns the typed error to raise ``from`` the original.
    """
    if isinstance(exc, SmtpDeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {address: (code, _text(reply)) for address, (code, reply) in exc.recipients.items()}
        listed = "; ".join(f"{address}: {code} {reply}" for address, (code, reply) in refused.items())
        first_code, first_reply = next(iter(refused.values()), (0, ""))
        every_permanent = all(500 <= code < 600 for code, _ in refused.values())
        error_type = SmtpPermanentError if every_permanent else SmtpTemporaryError
        return error_type(
            f"every recipient refused: {listed}", code=first_code or None, reply=first_reply, refused=refused
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _by_code(exc.smtp_code, exc.smtp_error, prefix="authentication failed: ")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, HostNotAllowed):
        return SmtpPermanentError(NOT_ALLOWED)
    if isinstance(exc, DeadlineExceeded) or isinstance(exc.__context__, DeadlineExceeded):
        return SmtpTemporaryError("timed out: the server did not finish within the time allowed")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if isinstance(exc.__context__, TimeoutError):  # smtplib reports a read timeout as a disconnect
            return SmtpTemporaryError("timed out waiting for the server")
        return SmtpTemporaryError(f"connection closed by the server: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SmtpPermanentError(f"not supported by the server: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return SmtpPermanentError(f"SMTP error: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpPermanentError(f"TLS certificate not accepted: {getattr(exc, 'verify_message', None) or exc}")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return SmtpTemporaryError(f"connection dropped during TLS: {exc}")
    if isinstance(exc, ssl.SSLError):
        return SmtpPermanentError(f"TLS failure: {exc}")
    if isinstance(exc, TimeoutError):
        return SmtpTemporaryError(f"timed out: {exc}" if str(exc) else "timed out")
    if isinstance(exc, ConnectionRefusedError):
        return SmtpTemporaryError(f"connection refused: {exc}")
    if isinstance(exc, OSError):
        return SmtpTemporaryError(f"network error: {exc}")
    return SmtpTemporaryError(f"unexpected {type(exc).__name__}: {exc}")


# --- connection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """A message the server accepted. ``refused`` maps each refused recipient to (code, reply)."""

    accepted: tuple[str, ...]
    refused: Mapping[str, tuple[int, str]]
    code: int
    reply: str


@lru_cache(maxsize=1)
def _default_local_hostname() -> str:
    # What smtplib would send, worked out once per process instead of once per connection.
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


@lru_cache(maxsize=2)
def _system_tls_context(verify: bool) -> DeadlineTLSContext:
    # Loading the system CA store costs milliseconds: once per process.
    return tls_client_context(verify=verify)


def _tls_context(settings: SmtpSettings) -> DeadlineTLSContext:
    if settings.verify_tls and settings.ca_file:
        return tls_client_context(cafile=settings.ca_file)
    return _system_tls_context(settings.verify_tls)


class _GuardedSMTP(smtplib.SMTP):
    """smtplib's session over a socket from the address guard (checked address, total deadline)."""

    def __init__(self, connector: Callable[[], socket.socket], **kwargs: Any) -> None:
        self._connector = connector
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._connector()


class _GuardedSMTPSSL(smtplib.SMTP_SSL):
    """Implicit TLS over a guarded socket; SNI and the certificate check use the host name."""

    def __init__(self, connector: Callable[[], socket.socket], **kwargs: Any) -> None:
        self._connector = connector
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.context.wrap_socket(self._connector(), server_hostname=host)


def _is_readable(sock: socket.socket) -> bool:
    """True when a socket we expect to be silent has something to read: the server closed it or sent
    an unsolicited reply (a 421 before closing). Costs one system call, no round trip."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class SmtpConnection:
    """One SMTP session: ``open`` (TLS as configured, then login), any number of ``send``, ``close``.

    Not thread-safe. After a :class:`SmtpDeliveryError` the session is reset (RSET) or closed, so it
    never stays mid-transaction; ``is_open`` tells which.
    """

    def __init__(self, settings: SmtpSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._smtp: smtplib.SMTP | None = None
        self.max_size: int | None = None
        """The server's SIZE limit in bytes (``None``: not advertised, or no limit)."""
        self.pipelining = False
        self.last_used = 0.0
        """``clock()`` at the last successful exchange with the server."""

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<SmtpConnection {self.settings.host}:{self.settings.port} {self.settings.tls} {state}>"

    def __enter__(self) -> SmtpConnection:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._smtp is not None and self._smtp.sock is not None

    def open(self, *, deadline: float | None = None) -> None:
        """Connect, secure and log in by ``deadline`` (``time.monotonic()``; capped by the settings'
        timeout); raises :class:`SmtpDeliveryError`. No-op if already open."""
        if self.is_open:
            return
        self.close()
        settings = self.settings
        local_hostname = settings.local_hostname or _default_local_hostname()
        name = connect_name(settings.host)
        until = deadline_after(settings.timeout, deadline)

        def connector() -> socket.socket:
            return connect(name, settings.port, settings.address_policy, deadline=until,
                           op_timeout=settings.timeout)

        try:
            smtp: smtplib.SMTP
            if settings.tls == "ssl":
                smtp = _GuardedSMTPSSL(connector, host=name, port=settings.port, local_hostname=local_hostname,
                                       timeout=settings.timeout, context=_tls_context(settings))
            else:
                smtp = _GuardedSMTP(connector, host=name, port=settings.port, local_hostname=local_hostname,
                                    timeout=settings.timeout)
            self._smtp = smtp
            smtp.ehlo_or_helo_if_needed()
            if settings.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
                smtp.starttls(context=_tls_context(settings))
                smtp.ehlo_or_helo_if_needed()
            if settings.has_credentials:
                assert settings.user is not None and settings.password is not None
                smtp.login(settings.user, settings.password)
        except (smtplib.SMTPException, OSError, HostNotAllowed) as exc:
            self._abort()
            raise classify_smtp_failure(exc) from exc
        size = smtp.esmtp_features.get("size", "").strip() if smtp.does_esmtp else ""
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None
        self.pipelining = smtp.does_esmtp and smtp.has_extn("pipelining")
        self.last_used = self._clock()

    def idle_seconds(self) -> float:
        return self._clock() - self.last_used

    def peer_closed(self) -> bool:
        """A free check (no round trip) that catches a connection the server has closed."""
        smtp = self._smtp
        return smtp is None or smtp.sock is None or _is_readable(smtp.sock)

    def is_alive(self, *, deadline: float | None = None) -> bool:
        """True when the server answers NOOP with 250 (one round trip, by ``deadline``)."""
        if self.peer_closed():
            return False
        assert self._smtp is not None
        set_deadline(self._smtp.sock, deadline_after(self.settings.timeout, deadline))
        try:
            alive = self._smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False
        if alive:
            self.last_used = self._clock()
        return alive

    def send(self, envelope_from: str, recipients: Sequence[str], data: bytes, *,
             deadline: float | None = None) -> SendOutcome:
        """Deliver ``data`` (CRLF line ends; dot-stuffed here) to ``recipients``, by ``deadline``
        (``time.monotonic()``; capped by the settings' timeout).

        Returns when the server accepted the message for at least one recipient; raises
        :class:`SmtpTemporaryError` or :class:`SmtpPermanentError` otherwise (a deadline reached is
        temporary: the connection is closed, the message may be retried).
        """
        smtp = self._smtp
        utf8 = self._needs_smtputf8(envelope_from, recipients, data)
        if utf8 and smtp is not None and not (smtp.does_esmtp and smtp.has_extn("smtputf8")):
            raise SmtpPermanentError("the server does not offer SMTPUTF8, which an address with a non-ASCII "
                                     "local part needs (RFC 6531); send to an ASCII address or through another "
                                     "account")
        self._check_envelope(envelope_from, recipients, data, utf8=utf8)
        options = ""
        if smtp is not None and smtp.does_esmtp:
            if smtp.has_extn("size"):
                options += f" SIZE={len(data)}"
            if not data.isascii() and smtp.has_extn("8bitmime"):
                options += " BODY=8BITMIME"
            if utf8:
                options += " SMTPUTF8"
        try:
            if smtp is None or smtp.sock is None:
                raise smtplib.SMTPServerDisconnected("the connection is not open")
            set_deadline(smtp.sock, deadline_after(self.settings.timeout, deadline))
            smtp.command_encoding = "utf-8" if utf8 else "ascii"  # what smtplib's own sendmail does
            commands = [f"MAIL FROM:<{envelope_from}>{options}"]
            commands += [f"RCPT TO:<{recipient}>" for recipient in recipients]
            commands.append("DATA")
            if self.pipelining:
                smtp.send("".join(f"{command}\r\n" for command in commands))
                replies = self._replies(smtp, len(commands))
            else:
                replies = self._replies_one_by_one(smtp, commands)
            outcome = self._finish(smtp, envelope_from, recipients, replies, data)
        except (smtplib.SMTPException, OSError) as exc:
            raise classify_smtp_failure(exc) from exc
        self.last_used = self._clock()
        return outcome

    def close(self) -> None:
        """QUIT (briefly) and close; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.sock is not None and not _is_readable(smtp.sock):
                set_deadline(smtp.sock, deadline_after(min(self.settings.timeout, _QUIT_TIMEOUT)))
                smtp.sock.settimeout(min(self.settings.timeout, _QUIT_TIMEOUT))
                smtp.quit()
        except (smtplib.SMTPException, OSError, ValueError):
            pass
        finally:
            self._close_quietly(smtp)

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _needs_smtputf8(envelope_from: str, recipients: Sequence[str], data: bytes) -> bool:
        """A UTF-8 address in the envelope, or in the headers (which mime keeps 7-bit otherwise)."""
        if not all(address.isascii() for address in (envelope_from, *recipients)):
            return True
        end = data.find(b"\r\n\r\n")
        return not data[: end if end >= 0 else len(data)].isascii()

    def _check_envelope(self, envelope_from: str, recipients: Sequence[str], data: bytes, *,
                        utf8: bool = False) -> None:
        if not recipients:
            raise SmtpPermanentError("malformed envelope: no recipients")
        for address in (envelope_from, *recipients):
            if (not utf8 and not address.isascii()) or _UNSAFE_IN_ADDRESS.search(address):
                raise SmtpPermanentError(f"malformed envelope address {address!r} (ASCII without <, > or spaces)")
        if self.max_size is not None and len(data) > self.max_size:
            raise SmtpPermanentError(
                f"message too large: {len(data)} bytes, the server accepts at most {self.max_size}"
            )

    @staticmethod
    def _replies(smtp: smtplib.SMTP, count: int) -> list[tuple[int, bytes]]:
        """Read up to ``count`` replies, stopping after a 421 (the server closes after it)."""
        replies: list[tuple[int, bytes]] = []
        for _ in range(count):
            replies.append(smtp.getreply())
            if replies[-1][0] == 421:
                break
        return replies

    @staticmethod
    def _replies_one_by_one(smtp: smtplib.SMTP, commands: Sequence[str]) -> list[tuple[int, bytes]]:
        """Without PIPELINING: send each command after the previous reply, stopping where the rest
        could not succeed (MAIL refused, no recipient accepted, a 421)."""
        mail, *rcpts, data = commands
        smtp.putcmd(mail)
        replies = [smtp.getreply()]
        if replies[0][0] != 250:
            return replies
        for rcpt in rcpts:
            smtp.putcmd(rcpt)
            replies.append(smtp.getreply())
            if replies[-1][0] == 421:
                return replies
        if any(code in (250, 251) for code, _ in replies[1:]):
            smtp.putcmd(data)
            replies.append(smtp.getreply())
        return replies

    def _finish(
        self,
        smtp: smtplib.SMTP,
        envelope_from: str,
        recipients: Sequence[str],
        replies: Sequence[tuple[int, bytes]],
        data: bytes,
    ) -> SendOutcome:
        """Judge the replies to MAIL, RCPT... and DATA; send the data when the server is waiting."""
        closing = next((reply for reply in replies if reply[0] == 421), None)
        if closing is not None:  # the server is closing the session: nothing more can be said on it
            self._abort()
            raise smtplib.SMTPResponseException(*closing)
        mail_code, mail_reply = replies[0]
        rcpt_replies = replies[1 : 1 + len(recipients)]
        data_code, data_reply = replies[1 + len(recipients)] if len(replies) > len(recipients) + 1 else (0, b"")
        if data_code == 354 and (mail_code != 250 or not any(code in (250, 251) for code, _ in rcpt_replies)):
            # A server that says 354 after refusing the transaction: end the empty data, ignore its reply.
            smtp.send(b".\r\n")
            smtp.getreply()
            data_code = 0
        if mail_code != 250:
            self._after_refusal(smtp)
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, envelope_from)
        accepted: list[str] = []
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient, (code, reply) in zip(recipients, rcpt_replies, strict=False):
            if code in (250, 251):
                accepted.append(recipient)
            else:
                refused[recipient] = (code, reply)
        if not accepted:
            self._after_refusal(smtp)
            raise smtplib.SMTPRecipientsRefused(refused)
        if data_code != 354:
            self._after_refusal(smtp)
            raise smtplib.SMTPDataError(data_code, data_reply)
        stuffed = _DOT_AT_LINE_START.sub(b"..", data)
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        smtp.send(stuffed + b".\r\n")
        code, reply = smtp.getreply()
        if code != 250:
            self._after_refusal(smtp)
            raise smtplib.SMTPDataError(code, reply)
        return SendOutcome(
            accepted=tuple(accepted),
            refused={address: (code, _text(reply)) for address, (code, reply) in refused.items()},
            code=code,
            reply=_text(reply),
        )

    def _after_refusal(self, smtp: smtplib.SMTP) -> None:
        """Leave the session ready for the next message (RSET), or closed if even that fails."""
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._abort()

    def _abort(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            self._close_quietly(smtp)

    @staticmethod
    def _close_quietly(smtp: smtplib.SMTP) -> None:
        with contextlib.suppress(OSError):
            smtp.close()


# --- cache ----------------------------------------------------------------------------------------


class ConnectionCache:
    """Open connections kept across warm Lambda invocations, one per account's settings.

    ``get`` hands out a connection that is open and fresh: the server has not closed it (checked
    without a round trip), it was used within ``max_idle`` seconds, and if idle more than
    ``noop_after`` seconds it answered NOOP; otherwise a new one is opened. Call ``discard`` after a
    :class:`SmtpDeliveryError`. At most ``max_connections`` are kept (least recently used closed first).

    Not thread-safe: a Lambda runs one invocation at a time; use one cache per thread otherwise.
    """

    def __init__(
        self,
        *,
        max_idle: float = 240.0,
        noop_after: float = 5.0,
        max_connections: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_idle = max_idle
        self.noop_after = noop_after
        self.max_connections = max_connections
        self._clock = clock
        self._connections: dict[tuple[object, ...], SmtpConnection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def get(self, settings: SmtpSettings, *, deadline: float | None = None) -> SmtpConnection:
        """An open connection for ``settings``, checked or opened by ``deadline`` (``time.monotonic()``);
        raises :class:`SmtpDeliveryError` if one cannot be opened."""
        key = settings.fingerprint
        connection = self._connections.pop(key, None)
        if connection is not None and not self._reusable(connection, deadline):
            connection.close()
            connection = None
        self._close_stale()
        if connection is None:
            connection = SmtpConnection(settings, clock=self._clock)
            connection.open(deadline=deadline)
        self._connections[key] = connection  # most recently used last
        while len(self._connections) > self.max_connections:
            self._connections.pop(next(iter(self._connections))).close()
        return connection

    def discard(self, settings: SmtpSettings) -> None:
        """Close and forget the connection for ``settings`` (after an error it may be unusable)."""
        connection = self._connections.pop(settings.fingerprint, None)
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    def _reusable(self, connection: SmtpConnection, deadline: float | None) -> bool:
        if not connection.is_open or connection.peer_closed():
            return False
        idle = connection.idle_seconds()
        if idle > self.max_idle:
            return False
        return idle <= self.noop_after or connection.is_alive(deadline=deadline)

    def _close_stale(self) -> None:
        for key, connection in list(self._connections.items()):
            if connection.idle_seconds() > self.max_idle or not connection.is_open:
                del self._connections[key]
                connection.close()
