"""Tenant routes: create, list, read, change, delete, suspend and resume a tenant; its API key and signing
secret."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from mail_proxy.api.api_docs import BODY_ERRORS, TOKEN, TOKEN_ERRORS, answers
from mail_proxy.api.schemas import TENANTS, Ok, TenantPath, created
from mail_proxy.api.services import principal, services
from mail_proxy.domain.tenant_models import TenantCreate, TenantSuspension, TenantUpdate, TenantView
from mail_proxy.usecases.tenants import MAX_SIGNING_GRACE_SECONDS

router = APIGatewayHttpRouter()


class TenantCreated(Ok):
    tenant_id: str
    api_key: str = Field(description="the tenant's API token; shown only in this answer")
    signing_secret: str = Field(description="secret of the X-Mail-Proxy-Signature on delivery reports; "
                                            "shown only in this answer")


class SigningSecret(Ok):
    signing_secret: str
    previous_valid_until: int = Field(description="until then reports carry a signature with the old secret too")


class ApiKey(Ok):
    api_key: str


class TenantList(Ok):
    tenants: list[TenantView]


@router.post("/tenant", status_code=201, summary="Create a tenant (admin); its API key is in this answer only",
             tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 409,
                                                             ok=201, ok_description="Created",
                                                             conflict="The tenant, or the token asked for, exists"))
def create_tenant(request: TenantCreate) -> Response[TenantCreated]:
    credentials = services().tenants.create(principal(), request)
    return created(TenantCreated(tenant_id=request.tenant_id, api_key=credentials.api_key,
                                 signing_secret=credentials.signing_secret))


@router.get("/tenants", summary="List tenants (admin)", tags=TENANTS, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 422))
def list_tenants(active_only: Annotated[bool, Query()] = False) -> TenantList:
    return TenantList(tenants=services().tenants.list_tenants(principal(), active_only=active_only))


@router.get("/tenant/<tenant_id>", summary="A tenant's settings (secrets omitted)", tags=TENANTS, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 404, 422))
def get_tenant(tenant_id: TenantPath) -> TenantView:
    return services().tenants.get(principal(), tenant_id)


@router.put("/tenant/<tenant_id>", summary="Change a tenant's settings (only the fields given)", tags=TENANTS,
            security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def update_tenant(tenant_id: TenantPath, request: TenantUpdate) -> Ok:
    services().tenants.update(principal(), tenant_id, request)
    return Ok()


@router.delete("/tenant/<tenant_id>", summary="Delete a tenant with its accounts, messages and files (admin)",
               tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_tenant(tenant_id: TenantPath) -> Ok:
    services().tenants.delete(principal(), tenant_id)
    return Ok()


@router.post("/tenant/<tenant_id>/suspend",
             summary="Suspend a tenant (admin): its token gets 403, its messages wait",
             tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def suspend_tenant(tenant_id: TenantPath, request: Annotated[TenantSuspension | None, Body()] = None) -> Ok:
    services().tenants.suspend(principal(), tenant_id, request or TenantSuspension())
    return Ok()


@router.post("/tenant/<tenant_id>/resume",
             summary="Lift an administrator's suspension and a reputation guard's pause (admin)", tags=TENANTS,
             security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def resume_tenant(tenant_id: TenantPath) -> Ok:
    services().tenants.resume(principal(), tenant_id)
    return Ok()


@router.post("/tenant/<tenant_id>/api-key",
             summary="Replace the tenant's API key: the old one stops working at once",
             tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def new_api_key(tenant_id: TenantPath) -> ApiKey:
    return ApiKey(api_key=services().tenants.new_api_key(principal(), tenant_id))


@router.post("/tenant/<tenant_id>/signing-secret", summary="Rotate the secret that signs delivery reports",
             tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def rotate_signing_secret(tenant_id: TenantPath,
                          grace_seconds: Annotated[int, Query(ge=0, le=MAX_SIGNING_GRACE_SECONDS)] = 24 * 3600
                          ) -> SigningSecret:
    secret, valid_until = services().tenants.rotate_signing_secret(principal(), tenant_id, grace_seconds)
    return SigningSecret(signing_secret=secret, previous_valid_until=valid_until)


@router.delete("/tenant/<tenant_id>/api-key", summary="Revoke the tenant's API key (admin)", tags=TENANTS,
               security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422, conflict="The tenant has no API key"))
def revoke_api_key(tenant_id: TenantPath) -> Ok:
    services().tenants.revoke_api_key(principal(), tenant_id)
    return Ok()
