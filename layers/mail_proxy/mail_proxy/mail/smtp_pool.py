"""Open SMTP connections kept across warm Lambda invocations (``ConnectionCache``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mail_proxy.mail.smtp_client import SmtpConnection
from mail_proxy.mail.smtp_settings import SmtpSettings


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
