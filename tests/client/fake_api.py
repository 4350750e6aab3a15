"""A scripted stand-in for the proxy on 127.0.0.1: answers from a queue, records every request.

Used to show what the client does with answers the real proxy gives only under load or failure (429 with
Retry-After, 503, a dropped connection) without waiting for them to happen.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None


class FakeApi:
    """``answer(...)`` queues answers in order; when the queue is empty every request gets 200 ``{"ok": true}``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Answer] = deque()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.requests.append(Recorded(self.command, self.path,
                                                  {k.lower(): v for k, v in self.headers.items()}, body))
                    answer = fake.script.popleft() if fake.script else Answer(200, {"ok": True})
                data = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Silent."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       name="fake-api", daemon=True)

    def answer(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> FakeApi:
        with self.lock:
            self.script.append(Answer(status, body if body is not None else {"ok": True},
                                      tuple((headers or {}).items()), raw))
        return self

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
