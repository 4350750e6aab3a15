"""IMAP access for the bounce and PEC mailboxes (imaplib): read-only, bounded, with timeouts.

The folder is opened with EXAMINE (read-only) and messages are fetched with ``BODY.PEEK[]``, so polling
never changes the mailbox (no \\Seen flags, no deletions); where to resume is kept by the caller as
UIDVALIDITY and the last UID. The host goes through :mod:`mail_proxy.security.address_guard` (resolved once, private
and reserved addresses refused unless the settings' ``address_policy`` allows them, TLS checked against the
name). Every socket operation has ``timeout`` seconds and the whole session ends by its deadline (the
caller's, or ``DEFAULT_SESSION_SECONDS``), however slowly the server answers; a fetch takes at most
``max_message_bytes`` of a message, and every failure (refused, TLS, login, timeout, protocol) comes out as
``MailboxUnavailable`` with a reason that never contains the password.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from mail_proxy.security.address_guard import (
    NOT_ALLOWED,
    AddressPolicy,
    DeadlineExceeded,
    HostNotAllowed,
    connect,
    connect_name,
    deadline_after,
    tls_client_context,
)

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_SESSION_SECONDS = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
ImapTls = Literal["ssl", "starttls", "none"]


class MailboxUnavailable(Exception):
    """The mailbox could not be read now (connection, TLS, login, timeout, protocol error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MailboxSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    tls: ImapTls = "ssl"
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    ca_file: str | None = None
    verify_tls: bool = True
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)

    def tls_context(self) -> ssl.SSLContext:
        return tls_client_context(cafile=self.ca_file, verify=self.verify_tls)


_FAILURES = (imaplib.IMAP4.error, OSError, EOFError, ValueError)


class _GuardedIMAP4(imaplib.IMAP4):
    """imaplib over a socket from the address guard (checked address, session deadline)."""

    def __init__(self, host: str, port: int, timeout: float, connector: Callable[[], socket.socket]) -> None:
        self._connector = connector
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._connector()


class _GuardedIMAP4SSL(imaplib.IMAP4_SSL):
    """Implicit TLS over a guarded socket; SNI and the certificate check use the host name."""

    def __init__(self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext,
                 connector: Callable[[], socket.socket]) -> None:
        self._connector = connector
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self.ssl_context.wrap_socket(self._connector(), server_hostname=self.host)


class ImapMailbox:
    """One session on one folder: ``with ImapMailbox(settings) as box: box.uidvalidity, box.uids_after(n)``.

    The session (connect, login, every command) ends by ``deadline`` (``time.monotonic()``), or
    ``DEFAULT_SESSION_SECONDS`` after it starts when no deadline is given.
    """

    def __init__(self, settings: MailboxSettings, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 deadline: float | None = None) -> None:
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        self.deadline = deadline
        self.uidvalidity = 0
        self._conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapMailbox:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _open(self) -> None:
        s = self.settings
        where = f"{s.host}:{s.port}"
        name = connect_name(s.host)
        until = self.deadline if self.deadline is not None else deadline_after(DEFAULT_SESSION_SECONDS)

        def connector() -> socket.socket:
            return connect(name, s.port, s.address_policy, deadline=until, op_timeout=s.timeout)

        try:
            if s.tls == "ssl":
                self._conn = _GuardedIMAP4SSL(name, s.port, s.timeout, s.tls_context(), connector)
            else:
                self._conn = _GuardedIMAP4(name, s.port, s.timeout, connector)
                if s.tls == "starttls":
                    self._conn.starttls(ssl_context=s.tls_context())
        except HostNotAllowed as exc:
            raise MailboxUnavailable(NOT_ALLOWED) from exc
        except ssl.SSLError as exc:
            raise MailboxUnavailable(f"TLS with {where} failed: {exc.reason or exc}") from exc
        except DeadlineExceeded as exc:
            raise MailboxUnavailable(f"{where} did not answer within the time allowed") from exc
        except TimeoutError as exc:
            raise MailboxUnavailable(f"{where} did not answer within {s.timeout:g} s") from exc
        except _FAILURES as exc:
            raise MailboxUnavailable(f"cannot connect to {where}: {_short(exc)}") from exc
        try:
            self._conn.login(s.user, s.password)
        except imaplib.IMAP4.error as exc:
            raise MailboxUnavailable(f"login as {s.user!r} on {where} refused: {_short(exc)}") from exc
        except DeadlineExceeded as exc:
            raise MailboxUnavailable(f"{where} did not answer the login within the time allowed") from exc
        except TimeoutError as exc:
            raise MailboxUnavailable(f"{where} did not answer the login within {s.timeout:g} s") from exc
        except _FAILURES as exc:
            raise MailboxUnavailable(f"login on {where} failed: {_short(exc)}") from exc
        status, _data = self._call(lambda c: c.select(_quoted(s.folder), readonly=True))
        if status != "OK":
            raise MailboxUnavailable(f"folder {s.folder!r} cannot be opened on {where}")
        _status, values = self._call(lambda c: c.response("UIDVALIDITY"))
        try:
            self.uidvalidity = int(values[0]) if values and values[0] else 0
        except (TypeError, ValueError) as exc:
            raise MailboxUnavailable(f"folder {s.folder!r} on {where} reports no UIDVALIDITY") from exc

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending (``n:*`` also answers the last message when none is newer)."""
        status, data = self._call(lambda c: c.uid("SEARCH", "UID", f"{last_uid + 1}:*"))
        if status != "OK":
            raise MailboxUnavailable(f"UID SEARCH refused: {data!r:.200}")
        uids = {int(u) for chunk in data if isinstance(chunk, bytes) for u in chunk.split() if u.isdigit()}
        return sorted(u for u in uids if u > last_uid)

    def fetch(self, uid: int) -> bytes | None:
        """The message (its first ``max_message_bytes``), or None when it was expunged meanwhile."""
        status, data = self._call(lambda c: c.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{self.max_message_bytes}>)"))
        if status != "OK":
            raise MailboxUnavailable(f"UID FETCH {uid} refused: {data!r:.200}")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except _FAILURES:
            with contextlib.suppress(*_FAILURES):
                conn.shutdown()

    def _call(self, operation: Callable[[imaplib.IMAP4], tuple[str, Any]]) -> tuple[str, Any]:
        if self._conn is None:
            raise MailboxUnavailable("mailbox not open")
        try:
            return operation(self._conn)
        except DeadlineExceeded as exc:
            raise MailboxUnavailable(f"{self.settings.host} did not finish within the time allowed") from exc
        except TimeoutError as exc:
            raise MailboxUnavailable(f"{self.settings.host} stopped answering ({self.settings.timeout:g} s)") from exc
        except _FAILURES as exc:
            raise MailboxUnavailable(f"IMAP error on {self.settings.host}: {_short(exc)}") from exc


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return re.sub(r"\s+", " ", text)[:300]
