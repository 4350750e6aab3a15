"""moto's AWS emulation behind a keep-alive HTTP server: `python -m local.moto_server -H HOST -p PORT`.

`python -m moto.server` serves moto with werkzeug's development server, which closes the connection after
every response and logs every request: each emulated AWS call then costs a TCP connection (and a thread) on
both sides and a log line. This server answers the same requests with the same WSGI application, over
HTTP/1.1 connections that stay open, so boto3's connection pool reuses them, and logs nothing but errors.
The backend application chosen for a request (moto decides by host, signature and target headers) is
remembered per (service, target prefix), which moto otherwise works out anew for every request.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from local.moto_speedups import speed_up_moto

log = logging.getLogger("local.moto_server")

STATS_VARIABLE = "MAIL_PROXY_LOCAL_MOTO_STATS"
"""A directory: on stop, each server writes its calls and their CPU time by operation to moto-<port>.json."""

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _read_chunked(stream: Any) -> bytes:
    """A request body sent with `Transfer-Encoding: chunked`."""
    body = bytearray()
    while True:
        size_line = stream.readline(65537)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return bytes(body)
        body += stream.read(size)
        stream.readline(65537)  # the CRLF after the chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a log line per request costs more than many of the requests."""

    def _handle_any(self) -> None:
        length = self.headers.get("Content-Length")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(length)) if length else b""
        parts = urlsplit(self.path)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(parts.path, "latin-1"),
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": self.server.server_name_text,
            "SERVER_PORT": str(self.server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": self.client_address[1],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            status_headers[:] = [status, headers]
            return lambda data: None  # moto returns its bodies; nothing writes through this

        started = time.thread_time()
        try:
            result = self.server.app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("moto failed on %s %s", self.command, self.path)
            status_headers[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            payload = b"internal error in the AWS emulation"
        status, headers = status_headers
        code, _, reason = status.partition(" ")
        self.send_response_only(int(code), reason)
        has_length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered in ("connection", "transfer-encoding", "keep-alive"):
                continue
            if lowered == "content-length":
                has_length = True
            self.send_header(name, value)
        if not has_length:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)
        if self.server.stats is not None:
            self.server.stats.add(_operation(environ), time.thread_time() - started)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle_any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WsgiApp, stats: CallStats | None = None) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.server_name_text = address[0]
        self.stats = stats


def _operation(environ: dict[str, Any]) -> str:
    """`DynamoDB_20120810.UpdateItem`, `AmazonSQS.ReceiveMessage`, or the method and service for the rest."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    return str(target) if target else f"{environ['REQUEST_METHOD']} {_signature_service(environ) or '?'}"


class CallStats:
    """Calls answered and the CPU time spent on each, by operation (`MAIL_PROXY_LOCAL_MOTO_STATS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_operation: dict[str, list[float]] = {}

    def add(self, operation: str, cpu_seconds: float) -> None:
        with self._lock:
            entry = self.by_operation.setdefault(operation, [0, 0.0])
            entry[0] += 1
            entry[1] += cpu_seconds

    def write(self, path: str) -> None:
        with self._lock:
            rows = {name: {"calls": int(count), "cpu_ms": round(seconds * 1000, 1)}
                    for name, (count, seconds) in sorted(self.by_operation.items(), key=lambda kv: -kv[1][1])}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)


_REMEMBERED = frozenset({"dynamodb", "sqs"})  # the busy ones, whose backend depends on headers alone


def _signature_service(environ: dict[str, Any]) -> str | None:
    """The service a SigV4 signature names (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`)."""
    auth = environ.get("HTTP_AUTHORIZATION") or ""
    try:
        return str(auth.split(",")[0].split()[1].split("/")[3])
    except IndexError:
        return None


def moto_application() -> WsgiApp:
    """moto's WSGI application (the one `moto.server` serves), with the backend choice remembered.

    moto picks the backend from the host, then the signature's service and `X-Amz-Target`, and lists its
    service modules on disk while doing so, for every request; for DynamoDB and SQS the answer depends only on
    those headers, so it is worked out once per combination.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class RememberingDispatcher(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._chosen: dict[tuple[str, str, str], Any] = {}

        def get_application(self, environ: dict[str, Any]) -> Any:
            service = _signature_service(environ)
            if service not in _REMEMBERED or environ.get("PATH_INFO", "").startswith(("/moto-api", "/latest/")):
                return super().get_application(environ)
            key = (environ.get("HTTP_HOST", ""), service, (environ.get("HTTP_X_AMZ_TARGET") or "").split(".")[0])
            app = self._chosen.get(key)
            if app is None:
                app = self._chosen[key] = super().get_application(environ)
            return app

    return RememberingDispatcher()


class KeepAliveMotoServer:
    """moto on `host:port` in a thread of this process (`serve_forever` in the foreground from `main`)."""

    def __init__(self, host: str, port: int, stats: CallStats | None = None) -> None:
        self._server = _Server((host, port), moto_application(), stats)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-moto", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.moto_server", description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server does
    logging.basicConfig(level=logging.WARNING)
    speed_up_moto()
    stats_dir = os.environ.get(STATS_VARIABLE)
    stats = CallStats() if stats_dir else None
    server = KeepAliveMotoServer(args.host, args.port, stats)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    if stats is not None and stats_dir:
        stats.write(os.path.join(stats_dir, f"moto-{args.port}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
