"""Request bodies: refused as too large before anything reads them, and always a JSON object (or ``null``)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from mail_proxy.api.error_mapping import error_response
from mail_proxy.errors import InvalidInputError, PayloadTooLargeError
from mail_proxy.settings import ApiSettings, get_settings


def json_body(text: str) -> Any:
    """Every request body: refused as too large before it is parsed or validated, and always an object (or
    ``null``, which is no body: a route whose body is optional takes it, the others answer 422).

    Powertools validates a request before any middleware runs (so the size guard below alone would answer
    an oversize body that fails validation with 422), and it would quietly take the first element of a
    JSON array given where an object is expected.
    """
    limit = get_settings(ApiSettings).max_body_bytes
    if len(text.encode("utf-8")) > limit:
        raise PayloadTooLargeError(f"request body larger than {limit} bytes")
    data = json.loads(text)
    if data is not None and not isinstance(data, dict):
        raise InvalidInputError("request body must be a JSON object")
    return data


def body_size_guard(app_: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """413 for a body over ``MAX_BODY_BYTES`` on every route, also one that reads no JSON."""
    body = app_.current_event.body or ""
    limit = get_settings(ApiSettings).max_body_bytes
    # the limit is in bytes: a JSON body arrives as text, so count its UTF-8 bytes, not its characters
    size = len(body) * 3 // 4 if app_.current_event.is_base64_encoded else len(body.encode("utf-8"))
    if size > limit:
        return error_response(413, f"request body larger than {limit} bytes")
    return next_middleware(app_)
