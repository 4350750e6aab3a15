"""Suppression routes: the addresses a tenant's messages are not sent to (hard bounces and manual entries)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from mail_proxy.api.api_docs import BODY_ERRORS, TOKEN, TOKEN_ERRORS, answers
from mail_proxy.api.schemas import SUPPRESSIONS, Ok, TenantIdQuery, created
from mail_proxy.api.services import principal, services
from mail_proxy.domain.tenant_models import SuppressionCreate, SuppressionView
from mail_proxy.errors import InvalidInputError

router = APIGatewayHttpRouter()


class SuppressionPage(Ok):
    suppressions: list[SuppressionView]
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")


@router.get("/suppressions", summary="The tenant's suppressed addresses (hard bounces and manual entries)",
            tags=SUPPRESSIONS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def list_suppressions(
    tenant_id: TenantIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=254)] = None,
) -> SuppressionPage:
    entries, next_cursor = services().suppressions.list_entries(principal(), tenant_id, limit=limit, after=cursor)
    return SuppressionPage(suppressions=entries, next_cursor=next_cursor)


@router.post("/suppressions", status_code=201, summary="Suppress an address: messages to it are not sent",
             tags=SUPPRESSIONS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404,
                                                                  ok=201, ok_description="Suppressed"))
def add_suppression(request: SuppressionCreate, tenant_id: TenantIdQuery = None) -> Response[Ok]:
    if tenant_id and request.tenant_id and tenant_id != request.tenant_id:
        raise InvalidInputError("tenant_id in the query and in the body differ")
    scoped = request if request.tenant_id or not tenant_id else request.model_copy(update={"tenant_id": tenant_id})
    services().suppressions.add(principal(), scoped)
    return created(Ok())


@router.delete("/suppressions/<address>", summary="Stop suppressing an address", tags=SUPPRESSIONS, security=TOKEN,
               responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_suppression(address: Annotated[str, Path(max_length=300)], tenant_id: TenantIdQuery = None) -> Ok:
    services().suppressions.remove(principal(), unquote(address), tenant_id)
    return Ok()
