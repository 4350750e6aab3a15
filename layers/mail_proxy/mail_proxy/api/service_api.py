"""The service's own routes: liveness, large-attachment downloads, ``/status`` and the command log."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from mail_proxy.api.api_docs import TOKEN, TOKEN_ERRORS, Redirect, answers
from mail_proxy.api.error_mapping import error_response
from mail_proxy.api.schemas import SERVICE, Ok, TenantIdQuery
from mail_proxy.api.services import principal, services
from mail_proxy.errors import NotFoundError
from mail_proxy.usecases.command_log import CommandEntry, read_command_log
from mail_proxy.usecases.service_status import Status, service_status

router = APIGatewayHttpRouter()


class Health(BaseModel):
    status: str = "ok"
    ok: bool = True


class CommandLog(Ok):
    commands: list[CommandEntry]


@router.get("/health", summary="Liveness; no token needed", tags=SERVICE, responses=answers(429))
def health() -> Health:
    return Health()


@router.get("/files/<token>", summary="Download a large attachment (public link from a rewritten message)",
            tags=SERVICE, responses=answers(404, 410, 422, 429, ok=302, ok_model=Redirect,
                                            ok_description="Redirect (Location) to a short-lived download URL"))
def download_file(token: Annotated[str, Path(max_length=2048)]) -> Response[Any]:
    from mail_proxy.adapters.secrets_config import key_ring
    from mail_proxy.domain import clock
    from mail_proxy.security.file_links import read_token

    link = read_token(key_ring(), token)
    if link is None:
        raise NotFoundError("no such file")
    if link.expires_ts < clock.now_ts():
        return error_response(410, "this download link has expired")
    if not services().blobs.exists(link.key):  # deleted with its message or tenant
        raise NotFoundError("no such file")
    url = services().blobs.presigned_get(link.key, 300, link.filename)
    return Response(status_code=302, content_type="application/json", body={"detail": "redirect"},
                    headers={"Location": url, "Cache-Control": "no-store"})


@router.get("/status", summary="Messages by status and the oldest waiting one: the caller's tenant, or all (admin)",
            tags=SERVICE, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def status(tenant_id: TenantIdQuery = None) -> Status:
    return service_status(services().repo, principal(), tenant_id)


@router.get("/command-log", summary="The audit log of commands (admin)", tags=SERVICE, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 422))
def command_log(
    tenant_id: TenantIdQuery = None,
    since_ts: Annotated[int | None, Query(ge=0)] = None,
    until_ts: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CommandLog:
    entries = read_command_log(services().repo, principal(), tenant_id, since_ts=since_ts, until_ts=until_ts,
                               limit=limit)
    return CommandLog(commands=entries)
