"""genro-mail-proxy 0.7.0's RPC-style routes (``/{entity}/{method}``), as thin adapters.

Each route translates upstream's parameters and answer shapes (bare lists, ``id`` for tenants, ``pk`` and
``smtp_ts`` for messages, ``endpoint`` in the command log) and calls the same use case as the REST route
that does the same thing: the same authorization (through ``Principal``), the same validation, the same
errors. Nothing here decides a rule of its own. Upstream routes with no equivalent answer 501 and say so.
This module has the instance, tenant and account routes; ``compat_messages_api`` the messages, the command
log, ``/metrics`` and the routes not provided.

Routes are matched by method and exact path; the static ``GET /messages/list|get|cleanup|count_active|
count_pending_for_tenant`` take precedence over ``GET /messages/{id}``. A message whose id is one of those
verbs stays reachable as ``GET /messages/get?message_id=<id>`` and ``GET /messages/<id>/events``
(docs/compat.md).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mail_proxy.api.api_docs import BODY_ERRORS, TOKEN, TOKEN_ERRORS, DescribedAs, answers
from mail_proxy.api.messages_api import BatchState
from mail_proxy.api.services import principal, services
from mail_proxy.domain.account_models import AccountCreate, AccountView
from mail_proxy.domain.message_models import MessageRecord
from mail_proxy.domain.models import TENANT_ID_PATTERN
from mail_proxy.domain.tenant_models import TenantCreate, TenantUpdate, TenantView
from mail_proxy.errors import InvalidInputError
from mail_proxy.usecases.service_status import service_status

router = APIGatewayHttpRouter()
COMPAT_TAGS = ["genro-mail-proxy"]  # in /openapi.json: routes for upstream's clients (docs/compat.md)

COMPAT_LIST_MAX = 1000  # records in one bare-list answer (upstream's lists have no paging)

TenantQ = Annotated[str | None, Query(max_length=64)]
RequiredTenantQ = Annotated[str, Query(max_length=64)]
IdQ = Annotated[str, Query(min_length=1, max_length=128)]


def _json(body: Any, status: int = 200) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- records


def tenant_record(view: TenantView) -> dict[str, Any]:
    """A tenant as upstream's client reads it: ``id`` and ``suspended_batches`` among today's fields."""
    return view.model_dump(mode="json")


def account_record(view: AccountView) -> dict[str, Any]:
    data = view.model_dump(mode="json")
    data["use_tls"] = view.tls != "none"
    data["is_pec_account"] = view.is_pec
    return data


def message_pk(tenant_id: str, message_id: str) -> str:
    """Upstream addresses a message by an opaque ``pk``; here it is ``<tenant_id>:<id>`` (tenant ids hold no ':')."""
    return f"{tenant_id}:{message_id}"


def message_record(record: MessageRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["pk"] = message_pk(record.tenant_id, record.id)
    return data


# --------------------------------------------------------------------------------------------- instance


@router.get("/instance/health", tags=COMPAT_TAGS, summary="genro-mail-proxy: health with a token",
            security=TOKEN, responses=answers(*TOKEN_ERRORS))
def instance_health() -> dict[str, Any]:
    principal().require_authenticated()
    return {"status": "ok", "ok": True}


@router.get("/instance/status", tags=COMPAT_TAGS, summary="genro-mail-proxy: the same answer as GET /status",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def instance_status(tenant_id: TenantQ = None) -> dict[str, Any]:
    return dict(service_status(services().repo, principal(), tenant_id).model_dump(mode="json"))


class TenantOptional(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)


class TenantBatch(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)
    batch_code: str | None = Field(default=None, min_length=1, max_length=64)


@router.post("/instance/run_now", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/run-now",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def instance_run_now(request: Annotated[TenantOptional | None, Body()] = None) -> dict[str, Any]:
    services().messages.run_now(principal(), request.tenant_id if request else None)
    return {"ok": True}


def _suspend(request: TenantBatch) -> dict[str, Any]:
    return dict(BatchState(**services().messages.suspend(principal(), request.tenant_id,
                                                              request.batch_code)).model_dump(mode="json"))


def _activate(request: TenantBatch) -> dict[str, Any]:
    return dict(BatchState(**services().messages.activate(principal(), request.tenant_id,
                                                               request.batch_code)).model_dump(mode="json"))


@router.post("/instance/suspend", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/suspend",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="Every batch is already suspended"))
def instance_suspend(request: TenantBatch) -> dict[str, Any]:
    return _suspend(request)


@router.post("/instance/activate", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/activate",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="Every batch is suspended: activate all batches first"))
def instance_activate(request: TenantBatch) -> dict[str, Any]:
    return _activate(request)


# ---------------------------------------------------------------------------------------------- tenants


class TenantKey(_Body):
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)


class NewApiKeyRequest(TenantKey):
    # accepted only as null (answered with a reason otherwise): keys here do not expire, they are revoked
    expires_at: Annotated[int | None, DescribedAs({"type": "null", "description": "keys here do not expire"})] = None


class TenantUpdateRequest(TenantUpdate):
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)


@router.post("/tenants/add", tags=COMPAT_TAGS,
             summary="genro-mail-proxy: POST /tenant, or PUT /tenant/{id} if it exists",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="The token asked for is in use"))
def tenants_add(request: TenantCreate) -> dict[str, Any]:
    """Upstream's add is an upsert: a new tenant is created (its key in the answer), an existing one updated."""
    who, svc = principal(), services()
    who.require_admin()
    if svc.repo.get_tenant(request.tenant_id) is None:
        credentials = svc.tenants.create(who, request)
        view = svc.tenants.get(who, request.tenant_id)
        return {**tenant_record(view), "api_key": credentials.api_key,
                "signing_secret": credentials.signing_secret}
    if request.token is not None:
        raise InvalidInputError("token: the tenant exists; replace its key with /tenants/create_api_key")
    fields = {name: getattr(request, name) for name in request.model_fields_set
              if name not in ("tenant_id", "token")}
    svc.tenants.update(who, request.tenant_id, TenantUpdate(**fields))
    return tenant_record(svc.tenants.get(who, request.tenant_id))


@router.get("/tenants/get", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /tenant/{id}",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def tenants_get(tenant_id: RequiredTenantQ) -> dict[str, Any]:
    return tenant_record(services().tenants.get(principal(), tenant_id))


@router.get("/tenants/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /tenants, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def tenants_list(active_only: Annotated[bool, Query()] = False) -> Response[Any]:
    return _json([tenant_record(v) for v in services().tenants.list_tenants(principal(),
                                                                              active_only=active_only)])


@router.post("/tenants/update", tags=COMPAT_TAGS, summary="genro-mail-proxy: PUT /tenant/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_update(request: TenantUpdateRequest) -> dict[str, Any]:
    who, svc = principal(), services()
    fields = {name: getattr(request, name) for name in request.model_fields_set if name != "tenant_id"}
    svc.tenants.update(who, request.tenant_id, TenantUpdate(**fields))
    return tenant_record(svc.tenants.get(who, request.tenant_id))


@router.post("/tenants/delete", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /tenant/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_delete(request: TenantKey) -> Response[Any]:
    services().tenants.delete(principal(), request.tenant_id)
    return _json(True)


@router.post("/tenants/suspend_batch", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/suspend",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="Every batch is already suspended"))
def tenants_suspend_batch(request: TenantBatch) -> dict[str, Any]:
    return _suspend(request)


@router.post("/tenants/activate_batch", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/activate",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="Every batch is suspended: activate all batches first"))
def tenants_activate_batch(request: TenantBatch) -> dict[str, Any]:
    return _activate(request)


@router.get("/tenants/get_suspended_batches", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: suspended_batches of GET /tenant/{id}",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def tenants_get_suspended_batches(tenant_id: RequiredTenantQ) -> dict[str, Any]:
    view = services().tenants.get(principal(), tenant_id)
    return {"ok": True, "tenant_id": view.tenant_id, "suspended_batches": view.suspended_batches}


@router.post("/tenants/create_api_key", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /tenant/{id}/api-key",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_create_api_key(request: NewApiKeyRequest) -> dict[str, Any]:
    if request.expires_at is not None:
        raise InvalidInputError("expires_at: keys here do not expire; revoke a key to end it")
    key = services().tenants.new_api_key(principal(), request.tenant_id)
    return {"ok": True, "tenant_id": request.tenant_id, "api_key": key,
            "message": "Save this API key: it is shown only once."}


@router.post("/tenants/revoke_api_key", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /tenant/{id}/api-key",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="The tenant has no API key"))
def tenants_revoke_api_key(request: TenantKey) -> dict[str, Any]:
    services().tenants.revoke_api_key(principal(), request.tenant_id)
    return {"ok": True, "tenant_id": request.tenant_id, "message": "API key revoked"}


# --------------------------------------------------------------------------------------------- accounts


class AccountKey(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)
    account_id: str = Field(min_length=1, max_length=128)


@router.post("/accounts/add", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /account",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def accounts_add(request: AccountCreate) -> dict[str, Any]:
    who, svc = principal(), services()
    svc.accounts.put(who, request)
    return account_record(svc.accounts.get(who, request.id, request.tenant_id))


@router.post("/accounts/add_pec", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /account with is_pec",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def accounts_add_pec(request: Annotated[dict[str, Any], DescribedAs(AccountCreate), Body()]) -> dict[str, Any]:
    try:
        account = AccountCreate.model_validate({**request, "is_pec": True})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from exc
    return accounts_add(account)


@router.get("/accounts/get", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /account/{id}",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def accounts_get(account_id: IdQ, tenant_id: TenantQ = None) -> dict[str, Any]:
    return account_record(services().accounts.get(principal(), account_id, tenant_id))


@router.get("/accounts/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /accounts, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def accounts_list(tenant_id: TenantQ = None) -> Response[Any]:
    return _json([account_record(a) for a in services().accounts.list_accounts(principal(), tenant_id)])


@router.post("/accounts/delete", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /account/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def accounts_delete(request: AccountKey) -> Response[Any]:
    services().accounts.delete(principal(), request.account_id, request.tenant_id)
    return _json(None)
