"""Errors become HTTP answers here and nowhere else: a status and ``{"detail": ...}``.

A client error is never a 500, and a validation error never echoes the submitted values (they may be
passwords).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from mail_proxy.adapters.observability import logger
from mail_proxy.errors import (
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    MailProxyError,
    NotFoundError,
    PayloadTooLargeError,
    ThrottledError,
    UnauthorizedError,
)

_STATUS = {
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidInputError: 422,
    ThrottledError: 429,
}
UNSUPPORTED_BODY = "request body must be JSON (Content-Type: application/json)"


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps({"detail": detail}), headers=headers)


def domain_error(exc: MailProxyError) -> Response:
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ThrottledError) else None
            return error_response(status, exc.detail, headers)
    logger.error("unmapped domain error", extra={"error": type(exc).__name__})
    return error_response(500, "internal error")


def configuration_error(exc: ConfigurationError) -> Response:
    logger.error("configuration error", extra={"error": str(exc)})
    return error_response(500, "service misconfigured; see the function's log")


def validation_error(exc: RequestValidationError) -> Response:
    details = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"] if len(err.get("loc", ())) > 1 else err.get("loc")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        details.append({"loc": list(loc or []), "msg": msg, "type": err.get("type")})
    return error_response(422, details)


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Every error answer of the resolver: domain errors, validation, content types, unknown paths."""
    app.exception_handler(MailProxyError)(domain_error)
    app.exception_handler(ConfigurationError)(configuration_error)
    app.exception_handler(RequestValidationError)(validation_error)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response:
        return error_response(415, UNSUPPORTED_BODY)

    @app.exception_handler(UnicodeDecodeError)
    def _undecodable_body(exc: UnicodeDecodeError) -> Response:
        """A body that is not UTF-8 reaches the function base64-encoded; decoding it is bad input, not a crash."""
        if app.current_event.is_base64_encoded:
            return error_response(422, "request body is not UTF-8 encoded JSON")
        raise exc

    @app.exception_handler(ValueError)
    def _malformed_form(exc: ValueError) -> Response:
        """Powertools parses a multipart/form-data body before validating it, and raises ValueError for one it
        cannot parse (no boundary): that is the client's content type, not a crash. Every other ValueError is."""
        content_type = str(app.current_event.headers.get("content-type") or "").lower()
        if content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
            return error_response(415, UNSUPPORTED_BODY)
        raise exc

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        """404 for a path no route has; 405 with ``Allow`` for a path that routes only other methods (Powertools
        answers both with its not-found handler, so the routes are looked up here with its own patterns).

        ``Allow`` names the methods of the path as OpenAPI matches it, a concrete path before a templated one: on
        ``/messages/delete`` that is POST, although ``GET /messages/{message_id}`` still serves a message of that
        id.
        """
        event = app.current_event
        allowed = sorted({route.method for route in app._static_routes if route.rule.match(event.path)}
                         or {route.method for route in app._dynamic_routes if route.rule.match(event.path)})
        if not allowed:
            return error_response(404, "Not Found")
        allow = ", ".join([*allowed, "OPTIONS"])
        if event.http_method.upper() == "OPTIONS":
            return Response(status_code=204, content_type="application/json", body="", headers={"Allow": allow})
        return error_response(405, f"method {event.http_method.upper()} not allowed here; allowed: {allow}",
                              headers={"Allow": allow})
