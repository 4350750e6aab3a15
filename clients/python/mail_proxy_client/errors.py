"""What the proxy's error answers become on the client side: one exception class per HTTP status.

Every class carries the status and the ``detail`` of the answer, so a caller can catch the one it cares
about (``except NotFound``) or all of them (``except MailProxyError``). ``ConnectionFailed`` is the odd one
out: the request got no HTTP answer at all, so its status is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MailProxyError(Exception):
    """Any failed call: ``status`` (None when nothing answered), ``detail`` (the answer's ``detail``)."""

    status: int | None = None

    def __init__(self, detail: Any, *, status: int | None = None, method: str = "", url: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        if status is not None:
            self.status = status
        self.detail = detail
        self.method = method
        self.url = url
        self.headers = dict(headers or {})
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line for a person: the status and a readable detail."""
        text = detail_text(self.detail)
        return f"{self.status} {text}" if self.status is not None else text


class Unauthorized(MailProxyError):
    """401: the token is missing or unknown (or was revoked)."""

    status = 401


class Forbidden(MailProxyError):
    """403: a valid token asking for something it may not touch (admin route, another tenant)."""

    status = 403


class NotFound(MailProxyError):
    """404: no such tenant, account or message (or it is not visible to this token)."""

    status = 404


class Conflict(MailProxyError):
    """409: the tenant exists already, or an Idempotency-Key was reused with another body."""

    status = 409


class PayloadTooLarge(MailProxyError):
    """413: the request body is over the proxy's limit."""

    status = 413


class ValidationFailed(MailProxyError):
    """422: invalid input. ``errors`` lists ``{"loc": [...], "msg": ..., "type": ...}`` items when the proxy
    gave field-level detail; ``fields`` maps each field path (``"port"``, ``"client_auth.token"``) to its
    message."""

    status = 422

    @property
    def errors(self) -> list[dict[str, Any]]:
        if isinstance(self.detail, list):
            return [item for item in self.detail if isinstance(item, dict)]
        return []

    @property
    def fields(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in self.errors:
            path = ".".join(str(part) for part in item.get("loc") or []) or "request"
            found[path] = str(item.get("msg", "invalid"))
        return found


class Throttled(MailProxyError):
    """429: slow down. ``retry_after`` is the proxy's ``Retry-After`` in seconds (None if absent)."""

    status = 429

    def __init__(self, detail: Any, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)


class MessagesRejected(MailProxyError):
    """``add-messages`` answered 200 but rejected some messages (the others were queued): ``rejected`` lists
    ``{"id", "reason"}``, ``queued`` counts the accepted ones. Raised by the Django backend, which must not
    report a partial send as a success."""

    def __init__(self, rejected: list[dict[str, Any]], queued: int) -> None:
        self.rejected = rejected
        self.queued = queued
        reasons = "; ".join(f"{item.get('id')}: {item.get('reason')}" for item in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        super().__init__(f"{len(rejected)} message(s) rejected, {queued} queued: {reasons}{more}")


class ServerError(MailProxyError):
    """5xx: the proxy (or its gateway) failed; the request may be retried."""


class ConnectionFailed(MailProxyError):
    """No HTTP answer: connection refused, reset, DNS failure or timeout."""


_BY_STATUS: dict[int, type[MailProxyError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: Throttled,
}


def error_for_status(status: int) -> type[MailProxyError]:
    """The exception class of an HTTP error status (``MailProxyError`` for one the contract does not name)."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, MailProxyError)


def detail_text(detail: Any) -> str:
    """A readable form of ``detail``: field errors become ``port: must be ...; host: field required``."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or [])
                message = str(item.get("msg", item))
                parts.append(f"{where}: {message}" if where else message)
            else:
                parts.append(str(item))
        return "; ".join(parts) or "invalid input"
    if isinstance(detail, dict):
        return ", ".join(f"{key}: {value}" for key, value in detail.items())
    return str(detail)
