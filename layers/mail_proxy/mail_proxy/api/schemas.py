"""What the routes of several resources share: the ``ok`` answer, the tenant parameters, path ids, tags."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel

from mail_proxy.errors import InvalidInputError

# tags group the operations in the document and in Swagger UI
SERVICE, TENANTS, ACCOUNTS = ["service"], ["tenants"], ["accounts"]
MESSAGES, SUPPRESSIONS = ["messages"], ["suppressions"]

TenantIdQuery = Annotated[str | None, Query(max_length=64)]
TenantPath = Annotated[str, Path(max_length=64)]


class Ok(BaseModel):
    ok: bool = True


def path_id(raw: str, field: str) -> str:
    """An id from the path, percent-decoded (ids may hold '/', '?', '#'), at most 128 characters."""
    value = unquote(raw)
    if not value or len(value) > 128:
        raise InvalidInputError(f"{field} must be 1-128 characters")
    return value


def created(model: BaseModel) -> Response[Any]:
    return Response(status_code=201, content_type="application/json", body=model)
