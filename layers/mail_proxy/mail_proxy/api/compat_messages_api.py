"""genro-mail-proxy 0.7.0's RPC-style routes for messages, the command log and ``/metrics``, and the upstream
routes this proxy does not provide (501 with the reason); the instance, tenant and account routes are in
``compat_api``, whose module docstring says how these adapters work.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

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
from mail_proxy.api.compat_api import (
    COMPAT_LIST_MAX,
    COMPAT_TAGS,
    IdQ,
    TenantQ,
    _Body,
    _json,
    message_pk,
    message_record,
)
from mail_proxy.api.schemas import path_id
from mail_proxy.api.services import principal, services
from mail_proxy.domain.message_models import MessageIn
from mail_proxy.errors import InvalidInputError, NotFoundError
from mail_proxy.usecases.command_log import read_command_log

router = APIGatewayHttpRouter()
PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string", "description": "Prometheus text exposition format"}}}
DEFAULT_CLEANUP_SECONDS = 86400  # upstream's default for GET /messages/cleanup


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
    who = principal()
    who.require_authenticated()
    result = services().submission.add_messages(who, [request], None)
    if result.rejected:
        raise InvalidInputError(result.rejected[0]["reason"])
    tenant_id = request.get("tenant_id") or who.tenant_id
    return {"id": request["id"], "pk": message_pk(str(tenant_id), request["id"])}


@router.post("/messages/add_batch", tags=COMPAT_TAGS, summary="genro-mail-proxy: POST /commands/add-messages",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def messages_add_batch(request: AddBatchRequest) -> dict[str, Any]:
    who = principal()
    who.require_authenticated()
    result = services().submission.add_messages(who, request.messages, request.default_priority)
    return {"ok": True, "queued": result.queued, "rejected": result.rejected}


@router.get("/messages/list", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /messages, as a bare list",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_list(tenant_id: TenantQ = None, active_only: Annotated[bool, Query()] = False,
                  include_history: Annotated[bool, Query()] = False) -> Response[Any]:
    records, _next = services().messages.list_messages(
        principal(), tenant_id, status=None, active_only=active_only, include_history=include_history,
        limit=COMPAT_LIST_MAX, cursor=None)
    return _json([message_record(r) for r in records])


@router.get("/messages/get", tags=COMPAT_TAGS, summary="genro-mail-proxy: GET /messages/{id}",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_get(message_id: IdQ, tenant_id: TenantQ = None) -> dict[str, Any]:
    return message_record(services().messages.get(principal(), message_id, tenant_id))


def _delete(tenant_id: str | None, ids: list[str]) -> dict[str, Any]:
    outcome = services().messages.delete(principal(), tenant_id, ids)
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
    return {"ok": True, "removed": services().messages.cleanup(principal(), tenant_id, older_than_seconds)}


@router.get("/messages/count_active", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: messages waiting (the caller's tenant, or all)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_count_active() -> Response[Any]:
    who, svc = principal(), services()
    who.require_authenticated()
    tenants = [who.tenant_id] if not who.is_admin else [t.tenant_id for t in svc.repo.list_tenants()]
    return _json(sum(svc.messages.pending_count(who, t, None) for t in tenants if t))


@router.get("/messages/count_pending_for_tenant", tags=COMPAT_TAGS,
            summary="genro-mail-proxy: pending_messages of a tenant",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def messages_count_pending_for_tenant(tenant_id: TenantQ = None,
                                      batch_code: Annotated[str | None, Query(max_length=64)] = None
                                      ) -> Response[Any]:
    return _json(services().messages.pending_count(principal(), tenant_id, batch_code))


@router.get("/messages/<message_id>/events", tags=COMPAT_TAGS,
            summary="A message's events, oldest first (genro-mail-proxy docs)",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def message_events(message_id: PathId, tenant_id: TenantQ = None) -> dict[str, Any]:
    record = services().messages.get(principal(), path_id(message_id, "message_id"), tenant_id)
    events = [{**e.model_dump(mode="json"), "event_data": e.metadata or {}} for e in record.history or []]
    return {"ok": True, "id": record.id, "tenant_id": record.tenant_id, "status": record.status.value,
            "events": events}


# ------------------------------------------------------------------------------------------ command log


def _commands(tenant_id: str | None, since_ts: int | None, until_ts: int | None, limit: int,
              endpoint_filter: str | None = None, offset: int = 0) -> list[dict[str, Any]]:
    entries = read_command_log(services().repo, principal(), tenant_id, since_ts=since_ts, until_ts=until_ts,
                               limit=min(limit + offset, COMPAT_LIST_MAX))
    if endpoint_filter:
        entries = [e for e in entries if endpoint_filter.lower() in e.command.lower()]
    return [{"id": e.id, "command_ts": e.command_ts, "endpoint": e.command, "tenant_id": e.tenant_id,
             "payload": e.payload, "response_status": e.response_status, "response_body": {"outcome": e.outcome}}
            for e in entries[offset:offset + limit]]


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

    svc = services()
    if not metrics_public():
        # the route passes no authorizer (so that it can be public): the token is checked here, the same way
        who = principal()
        if who.role.value == "anonymous":
            headers = router.current_event.headers or {}
            bearer = str(headers.get("authorization") or "")
            token = headers.get("x-api-token") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
            who = authenticate(svc.repo, token)
        who.require_admin()
    tenants = {t.tenant_id: t.name for t in svc.repo.list_tenants()}
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
        principal().require_authenticated()
        return _json({"detail": f"not provided by this proxy: {reason} (docs/compat.md)"}, status=501)

    return route


for (_method, _path), _reason in NOT_PROVIDED.items():
    router.route(_path, _method, include_in_schema=False)(_not_provided(_reason))
