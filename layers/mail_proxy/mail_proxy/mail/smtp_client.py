"""SMTP delivery over one reusable connection, with every failure classified as temporary or permanent.

A pure library over :mod:`smtplib` (no AWS). One message costs the round trips of MAIL, RCPT (one per
recipient) and DATA, or two in all when the server offers PIPELINING (RFC 2920); nothing else is sent
per message. Connections live in a ``ConnectionCache`` (``smtp_pool``) across warm Lambda invocations and are
checked (a free socket poll always, a NOOP only after a few idle seconds) before reuse.

Classification happens in one place, ``classify_smtp_failure`` (``smtp_replies``, with the errors):

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
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from mail_proxy.mail.smtp_replies import SendOutcome, SmtpPermanentError, _text, classify_smtp_failure
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import (
    DeadlineTLSContext,
    HostNotAllowed,
    connect,
    connect_name,
    deadline_after,
    set_deadline,
    tls_client_context,
)

__all__ = ["SmtpConnection"]

_QUIT_TIMEOUT = 2.0
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_UNSAFE_IN_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")


# --- connection -----------------------------------------------------------------------------------


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
