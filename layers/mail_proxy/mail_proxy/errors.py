"""The proxy's one error hierarchy: every error it raises on purpose is a :class:`MailProxyError`.

By meaning: what a request did wrong (unauthorised ... throttled), which the api function maps to HTTP in one
place (``api/http_api.py``); a deployment that is misconfigured; and a delivery that failed
(:class:`DeliveryError`: the SMTP client's, an attachment's, a message that cannot be built), which the sender
maps to a retry or a final failure in one place by ``temporary``.
"""

from __future__ import annotations

from typing import Any


class MailProxyError(Exception):
    """Base of every error the proxy raises on purpose."""

    def __init__(self, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail


class UnauthorizedError(MailProxyError):
    """No token, or a token that matches nothing."""


class ForbiddenError(MailProxyError):
    """A valid token asking for something it may not touch (admin route, other tenant)."""


class NotFoundError(MailProxyError):
    """The resource does not exist (or is not visible to the caller)."""


class ConflictError(MailProxyError):
    """The request contradicts the current state (tenant exists, batch state, in-flight request)."""


class InvalidInputError(MailProxyError):
    """Input that passed the schema but breaks a domain rule."""


class PayloadTooLargeError(MailProxyError):
    """A request body over the configured limit."""


class ThrottledError(MailProxyError):
    """A dependency (DynamoDB, SQS) throttled us; the client should retry after ``retry_after`` seconds."""

    def __init__(self, detail: Any, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConfigurationError(MailProxyError):
    """The deployment is misconfigured (missing key, missing variable): fail loudly at start-up."""


class DeliveryError(MailProxyError):
    """A message could not be delivered now: ``temporary`` when it may succeed later (4xx, timeouts, network),
    else never as submitted (5xx, authentication, a message that cannot be built)."""

    temporary: bool = False
