"""An SMTP server on loopback that keeps every message it receives as an `.eml` file.

It stands in for a tenant's SMTP server: it accepts AUTH with any credentials (accounts are configured with a
user and password) without TLS, and records the envelope in `X-Sink-Envelope-From` / `X-Sink-Envelope-To`
headers prepended to the stored message, so tests can check who the message was really delivered to
(Bcc recipients appear only there).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

log = logging.getLogger("local.smtp_sink")


def _accept_any_credentials(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=True)


class _Controller(Controller):
    """Controller that can listen on port 0: its readiness probe connects to the port actually bound."""

    def _trigger_server(self) -> None:
        if not self.port and self.server is not None:
            self.port = int(cast(asyncio.Server, self.server).sockets[0].getsockname()[1])
        super()._trigger_server()


class MailDirHandler:
    """aiosmtpd handler writing each message atomically, so a reader never sees half a file."""

    def __init__(self, mail_dir: Path, echo: bool = True) -> None:
        self.mail_dir = mail_dir
        self.echo = echo
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if not content and isinstance(envelope.content, bytes | str):
            raw = envelope.content
            content = raw.encode("utf-8") if isinstance(raw, str) else raw
        recipients = ", ".join(envelope.rcpt_tos)
        prefix = (
            f"X-Sink-Envelope-From: <{envelope.mail_from or ''}>\r\nX-Sink-Envelope-To: {recipients}\r\n"
        ).encode()
        path = self._store(prefix + content)
        if self.echo:
            print(
                f"{time.strftime('%H:%M:%S')} MAIL from=<{envelope.mail_from}> to={recipients} "
                f"size={len(content)} file={path}",
                flush=True,
            )
        return "250 Message accepted for delivery"

    def _store(self, data: bytes) -> Path:
        with self._lock:
            self.count += 1
            number = self.count
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
        path = self.mail_dir / f"{stamp}-{number:06d}.eml"
        temporary = self.mail_dir / f".{path.name}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return path


class SmtpSink:
    """Starts and stops the sink; `port` is the bound port (useful when started on port 0)."""

    def __init__(
        self, mail_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 2525, echo: bool = True
    ) -> None:
        self.mail_dir = Path(mail_dir)
        self.host = host
        self.requested_port = port
        self.handler = MailDirHandler(self.mail_dir, echo=echo)
        self._controller: Controller | None = None

    @property
    def port(self) -> int:
        if self._controller is None or self._controller.server is None:
            raise RuntimeError("SMTP sink is not started")
        return int(cast(asyncio.Server, self._controller.server).sockets[0].getsockname()[1])

    @property
    def received(self) -> int:
        return self.handler.count

    def start(self) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self._controller = _Controller(
            self.handler,
            hostname=self.host,
            port=self.requested_port,
            authenticator=_accept_any_credentials,
            auth_require_tls=False,
            ready_timeout=10,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
