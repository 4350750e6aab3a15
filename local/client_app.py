"""A stand-in for a tenant's application, served by the local stack under `/_local/app/<name>`.

Give a tenant `client_base_url` = `<api url>/_local/app/<name>` and its delivery reports have somewhere real
to go: every POST of `{"delivery_report": [...]}` is acknowledged (200 `{"ok": true}`), kept (the last
`KEEP` of them) and shown as one line in the console; `GET /_local/app` lists what was received. Without it,
an example tenant's made-up URL would fail every report call, retried for a day. The path is answered by the
stack itself, never by the api function; in AWS, API Gateway has no such route.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from local.gateway import LOCAL_PREFIX, GatewayResponse

PREFIX = LOCAL_PREFIX + "app"
KEEP = 200
_SHOWN_PER_LINE = 5

log = logging.getLogger("local.client_app")


def _json(status: int, body: Any) -> GatewayResponse:
    return GatewayResponse(status, [("Content-Type", "application/json")], json.dumps(body).encode())


def _describe(item: dict[str, Any]) -> str:
    event = str(item.get("event") or item.get("pec_event") or "event")
    detail = item.get("error") or item.get("deferred_reason") or item.get("bounce_reason") or ""
    text = f"{item.get('id')} {event}"
    return f"{text} ({' '.join(str(detail).split())[:80]})" if detail else text


class StandInApplication:
    """Acknowledges and keeps delivery reports, as a tenant's application would."""

    def __init__(self, keep: int = KEEP) -> None:
        self._received: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    @property
    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def __call__(self, method: str, path: str, body: bytes) -> GatewayResponse | None:
        """The answer for a path under `PREFIX`; None for any other path (the gateway routes it)."""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return None
        if method in ("GET", "HEAD"):
            return _json(200, {"reports": self.received})
        if method != "POST":
            return _json(405, {"detail": "the stand-in application takes POST (reports) and GET (what it got)"})
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            payload = None
        items = payload.get("delivery_report") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return _json(404, {"detail": "the stand-in application answers delivery reports only"})
        name = path[len(PREFIX):].strip("/").split("/", 1)[0] or "app"
        with self._lock:
            self._received.append({"received_ts": int(time.time()), "application": name, "path": path,
                                   "delivery_report": items})
        if items:
            shown = ", ".join(_describe(item) for item in items[:_SHOWN_PER_LINE] if isinstance(item, dict))
            more = f" and {len(items) - _SHOWN_PER_LINE} more" if len(items) > _SHOWN_PER_LINE else ""
            log.info("REPORT to %s: %s%s", name, shown, more)
        else:
            log.debug("empty sync to %s", name)
        return _json(200, {"ok": True})
