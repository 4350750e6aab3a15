"""genro-mail-proxy 0.7.0's RPC-style routes (``/{entity}/{method}``), as thin adapters.

Each route translates upstream's parameters and answer shapes (bare lists, ``id`` for tenants, ``pk`` and
``smtp_ts`` for messages, ``endpoint`` in the command log) and calls the same use case as the REST route
that does the same thing: the same authorization (through ``Principal``), the same validation, the same
errors. Nothing here decides a rule of its own. Upstream routes with no equivalent answer 501 and say so.

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

from mail_proxy.api.api_docs import (
    BODY_ERRORS,
    NOT_A_BOOLEAN,
    PRIORITY_SCHEMA,
    TOKEN,
    TOKEN_ERRORS,
    DescribedAs,
    PathId,
    answers,
)
from mail_proxy.domain.models import (
    TENANT_ID_PATTERN,
    AccountCreate,
    AccountView,
    MessageIn,
    MessageRecord,
    TenantCreate,
    TenantUpdate,
    TenantView,
)
from mail_proxy.errors import InvalidInputError, NotFoundError

router = APIGatewayHttpRouter()
COMPAT_TAGS = ["genro-mail-proxy"]  # in /openapi.json: routes for upstream's clients (docs/compat.md)

PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string", "description": "Prometheus text exposition format"}}}
COMPAT_LIST_MAX = 1000  # records in one bare-list answer (upstream's lists have no paging)
DEFAULT_CLEANUP_SECONDS = 86400  # upstream's default for GET /messages/cleanup

TenantQ = Annotated[str | None, Query(max_length=64)]
RequiredTenantQ = Annotated[str, Query(max_length=64)]
IdQ = Annotated[str, Query(min_length=1, max_length=128)]


def _http() -> Any:
    # the resolver module includes this router at its end; imported lazily to avoid an import cycle
    from mail_proxy.api import http_api

    return http_api


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
    _http().principal().require_authenticated()
    return {"status": "ok", "ok": True}


@router.get("/instance/status", tags=COMPAT_TAGS, summary="genro-mail-proxy: the same answer as GET /status",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def instance_status(tenant_id: TenantQ = None) -> dict[str, Any]:
    return dict(_http().status(tenant_id).model_dump(mode="json"))


class TenantOptional(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)


class TenantBatch(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)
    batch_code: str | None = Field(default=None, min_length=1, max_length=64)


@router.post("/instance/run_now", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/run-now",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def instance_run_now(request: Annotated[TenantOptional | None, Body()] = None) -> dict[str, Any]:
    h = _http()
    h.services().messages.run_now(h.principal(), request.tenant_id if request else None)
    return {"ok": True}


def _suspend(request: TenantBatch) -> dict[str, Any]:
    h = _http()
    return dict(h.BatchState(**h.services().messages.suspend(h.principal(), request.tenant_id,
                                                              request.batch_code)).model_dump(mode="json"))


def _activate(request: TenantBatch) -> dict[str, Any]:
    h = _http()
    return dict(h.BatchState(**h.services().messages.activate(h.principal(), request.tenant_id,
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
    h = _http()
    who, svc = h.principal(), h.services()
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
    h = _http()
    return tenant_record(h.services().tenants.get(h.principal(), tenant_id))


@router.get("/tenants/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /tenants, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def tenants_list(active_only: Annotated[bool, Query()] = False) -> Response[Any]:
    h = _http()
    return _json([tenant_record(v) for v in h.services().tenants.list_tenants(h.principal(),
                                                                              active_only=active_only)])


@router.post("/tenants/update", tags=COMPAT_TAGS, summary="genro-mail-proxy: PUT /tenant/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_update(request: TenantUpdateRequest) -> dict[str, Any]:
    h = _http()
    who, svc = h.principal(), h.services()
    fields = {name: getattr(request, name) for name in request.model_fields_set if name != "tenant_id"}
    svc.tenants.update(who, request.tenant_id, TenantUpdate(**fields))
    return tenant_record(svc.tenants.get(who, request.tenant_id))


@router.post("/tenants/delete", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /tenant/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_delete(request: TenantKey) -> Response[Any]:
    h = _http()
    h.services().tenants.delete(h.principal(), request.tenant_id)
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
    h = _http()
    view = h.services().tenants.get(h.principal(), tenant_id)
    return {"ok": True, "tenant_id": view.tenant_id, "suspended_batches": view.suspended_batches}


@router.post("/tenants/create_api_key", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /tenant/{id}/api-key",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def tenants_create_api_key(request: NewApiKeyRequest) -> dict[str, Any]:
    if request.expires_at is not None:
        raise InvalidInputError("expires_at: keys here do not expire; revoke a key to end it")
    h = _http()
    key = h.services().tenants.new_api_key(h.principal(), request.tenant_id)
    return {"ok": True, "tenant_id": request.tenant_id, "api_key": key,
            "message": "Save this API key: it is shown only once."}


@router.post("/tenants/revoke_api_key", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /tenant/{id}/api-key",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               conflict="The tenant has no API key"))
def tenants_revoke_api_key(request: TenantKey) -> dict[str, Any]:
    h = _http()
    h.services().tenants.revoke_api_key(h.principal(), request.tenant_id)
    return {"ok": True, "tenant_id": request.tenant_id, "message": "API key revoked"}


# --------------------------------------------------------------------------------------------- accounts


class AccountKey(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)
    account_id: str = Field(min_length=1, max_length=128)


@router.post("/accounts/add", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /account",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def accounts_add(request: AccountCreate) -> dict[str, Any]:
    h = _http()
    who, svc = h.principal(), h.services()
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
    h = _http()
    return account_record(h.services().accounts.get(h.principal(), account_id, tenant_id))


@router.get("/accounts/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /accounts, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def accounts_list(tenant_id: TenantQ = None) -> Response[Any]:
    h = _http()
    return _json([account_record(a) for a in h.services().accounts.list_accounts(h.principal(), tenant_id)])


@router.post("/accounts/delete", tags=COMPAT_TAGS, summary="genro-mail-proxy: DELETE /account/{id}",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def accounts_delete(request: AccountKey) -> Response[Any]:
    h = _http()
    h.services().accounts.delete(h.principal(), request.account_id, request.tenant_id)
    return _json(None)


# --------------------------------------------------------------------------------------------- messages


class AddBatchRequest(_Body):
    messages: list[Annotated[Any, DescribedAs(MessageIn, or_anything=True)]]
    default_priority: Annotated[int | str | None, NOT_A_BOOLEAN, DescribedAs(PRIORITY_SCHEMA)] = None


class DeleteBatchRequest(_Body):
    tenant_id: str | None = Field(default=None, max_length=64)
    ids: list[Annotated[str, Field(max_length=128)]] = Field(max_length=1000)


class DeleteOneRequest(_Body):
    message_pk: str = Field(min_length=3, max_length=200, pattern="^[^:]+:.+$", description="<tenant_id>:<id>")


@router.post("/messages/add", tags=COMPAT_TAGS, summary="genro-mail-proxy: one message of POST /commands/add-messages",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def messages_add(request: Annotated[dict[str, Any], DescribedAs(MessageIn), Body()]) -> dict[str, Any]:
    h = _http()
    who = h.principal()
    who.require_authenticated()
    result = h.services().submission.add_messages(who, [request], None)
    if result.rejected:
        raise InvalidInputError(result.rejected[0]["reason"])
    tenant_id = request.get("tenant_id") or who.tenant_id
    return {"id": request["id"], "pk": message_pk(str(tenant_id), request["id"])}


@router.post("/messages/add_batch", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/add-messages",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def messages_add_batch(request: AddBatchRequest) -> dict[str, Any]:
    h = _http()
    who = h.principal()
    who.require_authenticated()
    result = h.services().submission.add_messages(who, request.messages, request.default_priority)
    return {"ok": True, "queued": result.queued, "rejected": result.rejected}


@router.get("/messages/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /messages, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_list(tenant_id: TenantQ = None, active_only: Annotated[bool, Query()] = False,
                  include_history: Annotated[bool, Query()] = False) -> Response[Any]:
    h = _http()
    records, _next = h.services().messages.list_messages(
        h.principal(), tenant_id, status=None, active_only=active_only, include_history=include_history,
        limit=COMPAT_LIST_MAX, cursor=None)
    return _json([message_record(r) for r in records])


@router.get("/messages/get", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /messages/{id}",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_get(message_id: IdQ, tenant_id: TenantQ = None) -> dict[str, Any]:
    h = _http()
    return message_record(h.services().messages.get(h.principal(), message_id, tenant_id))


def _delete(tenant_id: str | None, ids: list[str]) -> dict[str, Any]:
    h = _http()
    outcome = h.services().messages.delete(h.principal(), tenant_id, ids)
    return {"ok": True, **outcome}


@router.post("/messages/delete_batch", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/delete-messages",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def messages_delete_batch(request: DeleteBatchRequest) -> dict[str, Any]:
    return _delete(request.tenant_id, request.ids)


@router.post("/messages/delete", tags=COMPAT_TAGS,
             summary="genro-mail-proxy: delete one message by its pk (tenant_id:id)",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def messages_delete(request: DeleteOneRequest) -> Response[Any]:
    tenant_id, sep, message_id = request.message_pk.partition(":")
    if not sep or not tenant_id or not message_id:
        raise InvalidInputError("message_pk must be <tenant_id>:<message id> (the pk of messages/list)")
    return _json(_delete(tenant_id, [message_id])["removed"] > 0)


@router.get("/messages/cleanup", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: POST /commands/cleanup-messages (a GET, as upstream)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_cleanup(tenant_id: TenantQ = None,
                     older_than_seconds: Annotated[int, Query(ge=0)] = DEFAULT_CLEANUP_SECONDS) -> dict[str, Any]:
    h = _http()
    return {"ok": True, "removed": h.services().messages.cleanup(h.principal(), tenant_id, older_than_seconds)}


@router.get("/messages/count_active", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: messages waiting (the caller's tenant, or all)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_count_active() -> Response[Any]:
    h = _http()
    who, svc = h.principal(), h.services()
    who.require_authenticated()
    tenants = [who.tenant_id] if not who.is_admin else [t["tenant_id"] for t in svc.repo.list_tenants()]
    return _json(sum(svc.messages.pending_count(who, t, None) for t in tenants if t))


@router.get("/messages/count_pending_for_tenant", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: pending_messages of a tenant",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_count_pending_for_tenant(tenant_id: TenantQ = None,
                                      batch_code: Annotated[str | None, Query(max_length=64)] = None
                                      ) -> Response[Any]:
    h = _http()
    return _json(h.services().messages.pending_count(h.principal(), tenant_id, batch_code))


@router.get("/messages/<message_id>/events", tags=COMPAT_TAGS,
            summary="A message's events, oldest first (genro-mail-proxy docs)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def message_events(message_id: PathId, tenant_id: TenantQ = None) -> dict[str, Any]:
    h = _http()
    record = h.services().messages.get(h.principal(), h.path_id(message_id, "message_id"), tenant_id)
    events = [{**e.model_dump(mode="json"), "event_data": e.metadata or {}} for e in record.history or []]
    return {"ok": True, "id": record.id, "tenant_id": record.tenant_id, "status": record.status.value,
            "events": events}


# ------------------------------------------------------------------------------------------ command log


def _commands(tenant_id: str | None, since_ts: int | None, until_ts: int | None, limit: int,
              endpoint_filter: str | None = None, offset: int = 0) -> list[dict[str, Any]]:
    h = _http()
    h.principal().require_admin()
    items = h.services().repo.list_commands(tenant_id, since_ts=since_ts, until_ts=until_ts,
                                            limit=min(limit + offset, COMPAT_LIST_MAX))
    if endpoint_filter:
        items = [i for i in items if endpoint_filter.lower() in str(i.get("command", "")).lower()]
    entries = []
    for item in items[offset:offset + limit]:
        try:
            payload = json.loads(item.get("payload") or "null")
        except json.JSONDecodeError:
            payload = item.get("payload")
        entries.append({"id": item["id"], "command_ts": item["command_ts"], "endpoint": item["command"],
                        "tenant_id": item.get("tenant_id"), "payload": payload,
                        "response_status": item.get("response_status"),
                        "response_body": {"outcome": item.get("outcome")}})
    return entries


@router.get("/command_log/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /command-log, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def command_log_list(tenant_id: TenantQ = None, since_ts: Annotated[int | None, Query(ge=0)] = None,
                     until_ts: Annotated[int | None, Query(ge=0)] = None,
                     endpoint_filter: Annotated[str | None, Query(max_length=100)] = None,
                     limit: Annotated[int, Query(ge=1, le=COMPAT_LIST_MAX)] = 100,
                     offset: Annotated[int, Query(ge=0, le=COMPAT_LIST_MAX)] = 0) -> Response[Any]:
    return _json(_commands(tenant_id, since_ts, until_ts, limit, endpoint_filter, offset))


@router.get("/command_log/get", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: one command-log entry (among the latest 1000)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def command_log_get(command_id: Annotated[str, Query(min_length=1, max_length=64)]) -> dict[str, Any]:
    for entry in _commands(None, None, None, COMPAT_LIST_MAX):
        if str(entry["id"]) == command_id:
            return entry
    raise NotFoundError(f"command '{command_id}' not found among the latest {COMPAT_LIST_MAX}")


@router.get("/command_log/export", tags=COMPAT_TAGS, summary="genro-mail-proxy: the command log in replay form",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def command_log_export(tenant_id: TenantQ = None, since_ts: Annotated[int | None, Query(ge=0)] = None,
                       until_ts: Annotated[int | None, Query(ge=0)] = None) -> Response[Any]:
    entries = _commands(tenant_id, since_ts, until_ts, COMPAT_LIST_MAX)
    return _json([{k: e[k] for k in ("endpoint", "tenant_id", "payload", "command_ts")} for e in entries])


# ----------------------------------------------------------------------------------------------- metrics


def metrics_public() -> bool:
    """The operator's choice (template parameter MetricsPublic): /metrics without a token, as upstream serves it."""
    from mail_proxy.settings import ApiSettings, get_settings

    return get_settings(ApiSettings).metrics_public


@router.get("/metrics", tags=COMPAT_TAGS,
            summary="Prometheus text: genro-mail-proxy's counters and pending gauge (admin token, "
                                "unless the operator made it public)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, ok_content=PROMETHEUS_TEXT))
def prometheus_metrics() -> Response[str]:
    from mail_proxy.adapters.aws_clients import client
    from mail_proxy.settings import ApiSettings, get_settings
    from mail_proxy.usecases import prometheus
    from mail_proxy.usecases.authorization import authenticate

    h = _http()
    svc = h.services()
    if not metrics_public():
        # the route passes no authorizer (so that it can be public): the token is checked here, the same way
        who = h.principal()
        if who.role.value == "anonymous":
            headers = router.current_event.headers or {}
            bearer = str(headers.get("authorization") or "")
            token = headers.get("x-api-token") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
            who = authenticate(svc.repo, token)
        who.require_admin()
    tenants = {t["tenant_id"]: t.get("name") for t in svc.repo.list_tenants()}
    counters = {t: c for t, c in prometheus.read_counters(svc.repo).items() if t in tenants}
    pending = prometheus.pending_in_queues(client("sqs"), get_settings(ApiSettings).send_queue_urls.values())
    pending += sum(sum(1 for _ in svc.repo.waiting_message_keys(t)) for t in tenants)  # deferred, due later
    pending += sum(len(svc.repo.held_message_ids(t, limit=10_000)) for t in tenants)  # held for their batch
    return Response(status_code=200, content_type=prometheus.CONTENT_TYPE,
                    body=prometheus.render(counters, tenants, pending))


# ------------------------------------------------------------------------------------- no equivalent

NOT_PROVIDED = {
    ("GET", "/instance/get"): "instance configuration lives in template.yaml parameters and Secrets Manager",
    ("POST", "/instance/update"): "instance configuration lives in template.yaml parameters and Secrets Manager; "
                                  "the admin token is rotated in Secrets Manager",
    ("POST", "/instance/upgrade_to_ee"): "there are no editions: every feature is always on",
    ("GET", "/instance/get_sync_status"): "report delivery is queue-driven; see GET /status and the reporter's "
                                          "metrics",
    ("GET", "/instance/get_bounce_config"): "bounce mailboxes are per tenant: the bounce_imap field of the tenant",
    ("POST", "/instance/set_bounce_config"): "bounce mailboxes are per tenant: PUT /tenant/{id} with bounce_imap",
    ("POST", "/instance/reload_bounce"): "the bounce poller reads the tenant's configuration on every run",
    ("GET", "/accounts/list_pec"): "list a tenant's accounts (GET /accounts) and read is_pec",
    ("GET", "/accounts/get_pec_ids"): "list a tenant's accounts (GET /accounts) and read is_pec",
    ("POST", "/command_log/purge"): "command-log entries expire on their own (DynamoDB TTL)",
    ("POST", "/storages/add"): "attachments come from base64, http_url, s3 or the tenant's endpoint; "
                               "there are no named storages",
    ("GET", "/storages/get"): "there are no named storages",
    ("GET", "/storages/list"): "there are no named storages",
    ("POST", "/storages/delete"): "there are no named storages",
}


def _not_provided(reason: str) -> Any:
    def route() -> Response[Any]:
        _http().principal().require_authenticated()
        return _json({"detail": f"not provided by this proxy: {reason} (docs/compat.md)"}, status=501)

    return route


for (_method, _path), _reason in NOT_PROVIDED.items():
    router.route(_path, _method, include_in_schema=False)(_not_provided(_reason))
