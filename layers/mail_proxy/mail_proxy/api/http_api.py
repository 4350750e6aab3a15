"""The management API: routes of the HTTP contract (docs/design.md), validated by Powertools and pydantic.

Domain errors become HTTP answers here and nowhere else. Every error body is ``{"detail": ...}``; a
client error is never a 500, and a validation error never echoes the submitted values (they may be
passwords).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.payload_store import PayloadStore
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.adapters.send_queue import SendQueue
from mail_proxy.api.api_docs import (
    BODY_ERRORS,
    NOT_A_BOOLEAN,
    PRIORITY_SCHEMA,
    SECURITY_SCHEMES,
    TOKEN,
    TOKEN_ERRORS,
    DescribedAs,
    PathId,
    Redirect,
    answers,
    swagger_ui_base_url,
)
from mail_proxy.domain import clock
from mail_proxy.domain.models import (
    MAX_MESSAGES_PER_CALL,
    RETENTION_SECONDS,
    WAITING_STATUSES,
    AccountCreate,
    AccountView,
    MessageIn,
    MessageRecord,
    MessageStatus,
    SuppressionCreate,
    SuppressionView,
    TenantCreate,
    TenantSuspension,
    TenantUpdate,
    TenantView,
)
from mail_proxy.domain.principal import Principal
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
from mail_proxy.settings import ApiSettings, get_settings
from mail_proxy.usecases.accounts import AccountAdmin
from mail_proxy.usecases.authorization import confirm_principal, forget_tenant_keys, principal_from_context
from mail_proxy.usecases.messages import MessageDesk, MessageSearch
from mail_proxy.usecases.submission import MessageSubmission
from mail_proxy.usecases.suppressions import SuppressionList
from mail_proxy.usecases.tenants import MAX_SIGNING_GRACE_SECONDS, TenantAdmin

API_TITLE = "Mail proxy"
API_VERSION = "1.0.0"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_STARTED = time.monotonic()



def _json_body(text: str) -> Any:
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


app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_json_body)
app.configure_openapi(title=API_TITLE, version=API_VERSION, security_schemes=SECURITY_SCHEMES)
# tags group the operations in the document and in Swagger UI
SERVICE, TENANTS, ACCOUNTS = ["service"], ["tenants"], ["accounts"]
MESSAGES, SUPPRESSIONS = ["messages"], ["suppressions"]


# --------------------------------------------------------------------------------------------- wiring


class Services:
    """The use cases, built once per container from the settings."""

    def __init__(self) -> None:
        settings = get_settings(ApiSettings)
        self.repo = MailRepository(settings.table_name)
        self.queue = SendQueue(settings.send_queue_urls)
        self.blobs = BlobStore(settings.attachment_bucket)
        self.tenants = TenantAdmin(self.repo, self.blobs)
        self.accounts = AccountAdmin(self.repo)
        payloads = PayloadStore(self.blobs, settings.payload_inline_max_bytes)
        self.submission = MessageSubmission(self.repo, self.queue, payloads)
        self.messages = MessageDesk(self.repo, self.queue,
                                    ReportQueue(settings.report_queue_url, settings.report_parked_queue_url), payloads)
        self.suppressions = SuppressionList(self.repo, days=settings.suppression_days)


@lru_cache(maxsize=1)
def services() -> Services:
    return Services()


def reset_services() -> None:
    from mail_proxy.api.unsubscribe_api import reset_unsubscribes

    services.cache_clear()
    reset_unsubscribes()
    _idempotent_add_messages.cache_clear()
    forget_tenant_keys()


def principal() -> Principal:
    """The caller, as the authorizer decided and as the current key confirms (401 for a revoked key, 403
    for a tenant suspended by an administrator)."""
    authorizer = app.current_event.request_context.authorizer
    context = authorizer.get_lambda if authorizer is not None else None
    who = principal_from_context(context)
    if who.tenant_id:
        logger.append_keys(tenant_id=who.tenant_id)
    return confirm_principal(services().repo, who, app.current_event.headers.get("x-api-token"))


# --------------------------------------------------------------------------------------------- errors

_STATUS = {
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidInputError: 422,
    ThrottledError: 429,
}


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps({"detail": detail}), headers=headers)


@app.exception_handler(MailProxyError)
def _domain_error(exc: MailProxyError) -> Response:
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ThrottledError) else None
            return error_response(status, exc.detail, headers)
    logger.error("unmapped domain error", extra={"error": type(exc).__name__})
    return error_response(500, "internal error")


@app.exception_handler(ConfigurationError)
def _configuration_error(exc: ConfigurationError) -> Response:
    logger.error("configuration error", extra={"error": str(exc)})
    return error_response(500, "service misconfigured; see the function's log")


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
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


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response:
    return error_response(415, "request body must be JSON (Content-Type: application/json)")


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
        return error_response(415, "request body must be JSON (Content-Type: application/json)")
    raise exc


@app.not_found
def _not_found(_exc: Exception) -> Response:
    """404 for a path no route has; 405 with ``Allow`` for a path that routes only other methods (Powertools
    answers both with its not-found handler, so the routes are looked up here with its own patterns).

    ``Allow`` names the methods of the path as OpenAPI matches it, a concrete path before a templated one: on
    ``/messages/delete`` that is POST, although ``GET /messages/{message_id}`` still serves a message of that id.
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


def _body_size_guard(app_: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    body = app_.current_event.body or ""
    limit = get_settings(ApiSettings).max_body_bytes
    # the limit is in bytes: a JSON body arrives as text, so count its UTF-8 bytes, not its characters
    size = len(body) * 3 // 4 if app_.current_event.is_base64_encoded else len(body.encode("utf-8"))
    if size > limit:
        return error_response(413, f"request body larger than {limit} bytes")
    return next_middleware(app_)


app.use(middlewares=[_body_size_guard])


# --------------------------------------------------------------------------------------------- schemas


class Ok(BaseModel):
    ok: bool = True


class Health(BaseModel):
    status: str = "ok"
    ok: bool = True


STATUS_MAX_MESSAGES = 5000  # messages counted per GET /status: the answer must come well within 29 s
STATUS_TIME_BUDGET_SECONDS = 10.0  # then the remaining tenants are listed as not counted


class TenantStatus(BaseModel):
    tenant_id: str
    active: bool
    admin_suspended: bool = Field(default=False, description="suspended by an administrator")
    reputation_paused: bool = Field(default=False, description="sending paused by the reputation guard: messages "
                                    "wait until an administrator's POST /tenant/{id}/resume")
    reputation_paused_reason: str | None = Field(default=None, description="the rate and threshold that paused it")
    suspended_batches: list[str]
    messages: dict[str, int] = Field(description="messages counted, by status")
    counted: int = Field(description="how many of the tenant's messages were counted, oldest first")
    oldest_waiting_id: str | None = None
    oldest_waiting_age_seconds: int | None = Field(
        default=None, description="age of the oldest message still pending, deferred or being sent")
    truncated: bool = Field(description="not every message was counted: the counts are a lower bound")


class Status(Ok):
    active: bool = True
    messages: dict[str, int] = Field(default_factory=dict, description="messages counted, by status, all tenants")
    oldest_waiting_age_seconds: int | None = None
    truncated: bool = Field(default=False, description=f"at most {STATUS_MAX_MESSAGES} messages are counted "
                                                       "per call; true when some were not")
    tenants: list[TenantStatus] = Field(default_factory=list)
    # genro-mail-proxy's documented fields
    scheduler_active: bool = Field(default=True, description="due messages are queued by the scheduled function")
    pending_messages: int = Field(default=0, description="messages counted as pending, deferred or sending")
    uptime_seconds: int = Field(default=0, description="age of the answering function container")


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


class AccountList(Ok):
    accounts: list[AccountView]


ADD_MESSAGES_DESCRIPTION = (
    "Each message is checked on its own: a valid one is queued, an invalid one (missing field, bad address, "
    "unknown account, duplicate id, ...) is listed in `rejected` with its `id` and `reason`, and the call still "
    "answers 200. The call itself is refused (422) only when the body is not an object with a `messages` array, "
    f"holds more than {MAX_MESSAGES_PER_CALL} messages, or has an invalid `default_priority`; with the admin "
    "token, `tenant_id` (query or in each message) says whose messages they are. With an `Idempotency-Key`, a "
    "repeated call gets the first answer (header `Idempotent-Replayed: true`).")
EXAMPLE_MESSAGE: dict[str, Any] = {"id": "order-1042", "account_id": "smtp1", "from": "Shop <shop@example.com>",
                   "to": ["ada@example.org"], "subject": "Your order 1042", "body": "Thank you for your order.",
                   "priority": "high"}


class AddMessagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"messages": [EXAMPLE_MESSAGE]}]})
    messages: list[Annotated[Any, DescribedAs(MessageIn, or_anything=True)]] = Field(
        description=f"at most {MAX_MESSAGES_PER_CALL} messages (MessageIn); each is validated on its own",
        json_schema_extra={"maxItems": MAX_MESSAGES_PER_CALL})
    default_priority: Annotated[int | str | None, NOT_A_BOOLEAN, DescribedAs(PRIORITY_SCHEMA)] = None


class Rejection(BaseModel):
    id: str | None
    reason: str


class AddMessagesResponse(Ok):
    queued: int
    rejected: list[Rejection]


class MessageList(Ok):
    messages: list[MessageRecord]
    next_cursor: str | None = None


class DeleteMessagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(max_length=128)]] = Field(max_length=1000)


class DeleteMessagesResponse(Ok):
    removed: int
    not_found: list[str]
    unauthorized: list[str]
    in_flight: list[str] = Field(default_factory=list, description="being sent right now: not removed")


class CleanupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    older_than_seconds: Annotated[int | None, NOT_A_BOOLEAN] = Field(default=None, ge=0)


class CleanupResponse(Ok):
    removed: int


class BatchState(Ok):
    tenant_id: str
    batch_code: str | None = None
    suspended_batches: list[str]
    pending_messages: int


class CommandEntry(BaseModel):
    id: str
    command_ts: int
    command: str
    tenant_id: str | None = None
    payload: Any = None
    outcome: str | None = None
    response_status: int | None = None


class CommandLog(Ok):
    commands: list[CommandEntry]


TenantIdQuery = Annotated[str | None, Query(max_length=64)]
TenantPath = Annotated[str, Path(max_length=64)]


def path_id(raw: str, field: str) -> str:
    """An id from the path, percent-decoded (ids may hold '/', '?', '#'), at most 128 characters."""
    value = unquote(raw)
    if not value or len(value) > 128:
        raise InvalidInputError(f"{field} must be 1-128 characters")
    return value


def created(model: BaseModel) -> Response[Any]:
    return Response(status_code=201, content_type="application/json", body=model)


# --------------------------------------------------------------------------------------------- routes


@app.get("/health", summary="Liveness; no token needed", tags=SERVICE, responses=answers(429))
def health() -> Health:
    return Health()


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return dict(json.loads(app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)))


@app.get("/files/<token>", summary="Download a large attachment (public link from a rewritten message)", tags=SERVICE,
         responses=answers(404, 410, 422, 429, ok=302, ok_model=Redirect,
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


@app.get("/status", summary="Messages by status and the oldest waiting one: the caller's tenant, or all (admin)",
         tags=SERVICE, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def status(tenant_id: TenantIdQuery = None) -> Status:
    scope = principal().tenant_scope(tenant_id, admin_may_omit=True)
    repo = services().repo
    tenants = [repo.require_tenant(scope)] if scope else repo.list_tenants()
    answer = Status(messages={s.value: 0 for s in MessageStatus})
    budget, deadline = STATUS_MAX_MESSAGES, time.monotonic() + STATUS_TIME_BUDGET_SECONDS
    for tenant in tenants:
        counted = _tenant_status(repo, tenant, budget if time.monotonic() < deadline else 0)
        budget -= counted.counted
        answer.tenants.append(counted)
        answer.truncated = answer.truncated or counted.truncated
        for name, count in counted.messages.items():
            answer.messages[name] = answer.messages.get(name, 0) + count
        if counted.oldest_waiting_age_seconds is not None:
            answer.oldest_waiting_age_seconds = max(answer.oldest_waiting_age_seconds or 0,
                                                    counted.oldest_waiting_age_seconds)
    answer.pending_messages = sum(answer.messages.get(s.value, 0) for s in WAITING_STATUSES)
    answer.uptime_seconds = int(time.monotonic() - _STARTED)
    return answer


def _tenant_status(repo: MailRepository, tenant: dict[str, Any], limit: int) -> TenantStatus:
    """Counts of up to ``limit`` of the tenant's messages, oldest first.

    Oldest first, so the oldest waiting message found is the oldest there is, even when truncated.
    """
    found, more = repo.message_census(tenant["tenant_id"], limit=limit) if limit > 0 else ([], True)
    counts = {s.value: 0 for s in MessageStatus}
    oldest: tuple[int, str] | None = None
    for message_id, state, created_ms in found:
        counts[state] = counts.get(state, 0) + 1
        if state in WAITING_STATUSES and (oldest is None or (created_ms, message_id) < oldest):
            oldest = (created_ms, message_id)
    return TenantStatus(
        tenant_id=tenant["tenant_id"], active=bool(tenant.get("active", True)),
        admin_suspended=bool(tenant.get("admin_suspended")),
        reputation_paused=bool(tenant.get("reputation_paused")),
        reputation_paused_reason=tenant.get("reputation_paused_reason"),
        suspended_batches=sorted(tenant.get("suspended_batches") or []), messages=counts, counted=len(found),
        oldest_waiting_id=oldest[1] if oldest else None,
        oldest_waiting_age_seconds=max(0, clock.now_ts() - oldest[0] // 1000) if oldest else None,
        truncated=more)


@app.post("/tenant", status_code=201, summary="Create a tenant (admin); its API key is in this answer only",
          tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 409,
                                                          ok=201, ok_description="Created",
                                                          conflict="The tenant, or the token asked for, exists"))
def create_tenant(request: TenantCreate) -> Response[TenantCreated]:
    credentials = services().tenants.create(principal(), request)
    return created(TenantCreated(tenant_id=request.tenant_id, api_key=credentials.api_key,
                                 signing_secret=credentials.signing_secret))


@app.get("/tenants", summary="List tenants (admin)", tags=TENANTS, security=TOKEN,
         responses=answers(*TOKEN_ERRORS, 422))
def list_tenants(active_only: Annotated[bool, Query()] = False) -> TenantList:
    return TenantList(tenants=services().tenants.list_tenants(principal(), active_only=active_only))


@app.get("/tenant/<tenant_id>", summary="A tenant's settings (secrets omitted)", tags=TENANTS, security=TOKEN,
         responses=answers(*TOKEN_ERRORS, 404, 422))
def get_tenant(tenant_id: TenantPath) -> TenantView:
    return services().tenants.get(principal(), tenant_id)


@app.put("/tenant/<tenant_id>", summary="Change a tenant's settings (only the fields given)", tags=TENANTS,
         security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def update_tenant(tenant_id: TenantPath, request: TenantUpdate) -> Ok:
    services().tenants.update(principal(), tenant_id, request)
    return Ok()


@app.delete("/tenant/<tenant_id>", summary="Delete a tenant with its accounts, messages and files (admin)",
            tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_tenant(tenant_id: TenantPath) -> Ok:
    services().tenants.delete(principal(), tenant_id)
    return Ok()


@app.post("/tenant/<tenant_id>/suspend", summary="Suspend a tenant (admin): its token gets 403, its messages wait",
          tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def suspend_tenant(tenant_id: TenantPath, request: Annotated[TenantSuspension | None, Body()] = None) -> Ok:
    services().tenants.suspend(principal(), tenant_id, request or TenantSuspension())
    return Ok()


@app.post("/tenant/<tenant_id>/resume",
          summary="Lift an administrator's suspension and a reputation guard's pause (admin)", tags=TENANTS,
          security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def resume_tenant(tenant_id: TenantPath) -> Ok:
    services().tenants.resume(principal(), tenant_id)
    return Ok()


@app.post("/tenant/<tenant_id>/api-key", summary="Replace the tenant's API key: the old one stops working at once",
          tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def new_api_key(tenant_id: TenantPath) -> ApiKey:
    return ApiKey(api_key=services().tenants.new_api_key(principal(), tenant_id))


@app.post("/tenant/<tenant_id>/signing-secret", summary="Rotate the secret that signs delivery reports",
          tags=TENANTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def rotate_signing_secret(
        tenant_id: TenantPath, grace_seconds: Annotated[int, Query(ge=0, le=MAX_SIGNING_GRACE_SECONDS)] = 24 * 3600,
) -> SigningSecret:
    secret, valid_until = services().tenants.rotate_signing_secret(principal(), tenant_id, grace_seconds)
    return SigningSecret(signing_secret=secret, previous_valid_until=valid_until)


@app.delete("/tenant/<tenant_id>/api-key", summary="Revoke the tenant's API key (admin)", tags=TENANTS,
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422, conflict="The tenant has no API key"))
def revoke_api_key(tenant_id: TenantPath) -> Ok:
    services().tenants.revoke_api_key(principal(), tenant_id)
    return Ok()


@app.post("/account", status_code=201, summary="Create or replace an SMTP account of the tenant", tags=ACCOUNTS,
          security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404,
                                            ok=201, ok_description="Created or replaced"))
def put_account(request: AccountCreate) -> Response[Ok]:
    services().accounts.put(principal(), request)
    return created(Ok())


@app.get("/accounts", summary="The tenant's SMTP accounts (passwords omitted)", tags=ACCOUNTS, security=TOKEN,
         responses=answers(*TOKEN_ERRORS, 404, 422))
def list_accounts(tenant_id: TenantIdQuery = None) -> AccountList:
    return AccountList(accounts=services().accounts.list_accounts(principal(), tenant_id))


@app.get("/account/<account_id>", summary="One SMTP account (password omitted); percent-encode the id",
         tags=ACCOUNTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def get_account(account_id: PathId, tenant_id: TenantIdQuery = None) -> AccountView:
    return services().accounts.get(principal(), path_id(account_id, "account_id"), tenant_id)


@app.delete("/account/<account_id>", summary="Delete an SMTP account", tags=ACCOUNTS, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_account(account_id: PathId, tenant_id: TenantIdQuery = None) -> Ok:
    services().accounts.delete(principal(), path_id(account_id, "account_id"), tenant_id)
    return Ok()


@app.post("/commands/add-messages", summary="Queue messages; each invalid one is rejected on its own, with its reason",
          description=ADD_MESSAGES_DESCRIPTION, tags=MESSAGES, security=TOKEN,
          responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                            conflict="The Idempotency-Key was used with a different request body"))
def add_messages(
    request: AddMessagesRequest,
    tenant_id: TenantIdQuery = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)] = None,
) -> Response[AddMessagesResponse]:
    who = principal()
    who.require_authenticated()

    def submit() -> dict[str, Any]:
        result = services().submission.add_messages(who, request.messages, request.default_priority, tenant_id)
        return {"ok": True, "queued": result.queued, "rejected": result.rejected}

    if idempotency_key:
        answer, replayed = _run_idempotent(who, tenant_id, idempotency_key, request, submit)
    else:
        answer, replayed = submit(), False
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(status_code=200, content_type="application/json",
                    body=AddMessagesResponse.model_validate(answer), headers=headers)


MAX_SEARCH_TS = 10**10 - 1  # epoch seconds in ten digits (until 2286)


@app.get("/messages", summary="The tenant's messages, oldest first, a page at a time; filtered by status, recipient, "
                              "subject, batch_code and creation time (docs/deliverability.md#search)",
         tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def list_messages(
    tenant_id: TenantIdQuery = None,
    status: Annotated[MessageStatus | None, Query()] = None,
    active_only: Annotated[bool, Query()] = False,
    include_history: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    recipient: Annotated[str | None, Query(min_length=3, max_length=254,
                                           description="messages to this address (to, cc or bcc; any case)")] = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=200,
                                         description="subject contains this text (case-insensitive)")] = None,
    batch_code: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since_ts: Annotated[int | None, Query(ge=0, le=MAX_SEARCH_TS, description="created at or after")] = None,
    until_ts: Annotated[int | None, Query(ge=0, le=MAX_SEARCH_TS, description="created at or before")] = None,
) -> MessageList:
    search = MessageSearch(recipient=recipient, subject=subject, batch_code=batch_code, since_ts=since_ts,
                           until_ts=until_ts)
    records, next_cursor = services().messages.list_messages(
        principal(), tenant_id, status=status, active_only=active_only, include_history=include_history,
        limit=limit, cursor=cursor, search=search)
    return MessageList(messages=records, next_cursor=next_cursor)


@app.get("/messages/<message_id>", summary="One message with its status and history; percent-encode the id",
         tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def get_message(message_id: PathId, tenant_id: TenantIdQuery = None) -> MessageRecord:
    # ids may hold '/', '?', '#', '%': clients percent-encode them in the path
    return services().messages.get(principal(), path_id(message_id, "message_id"), tenant_id)


@app.post("/commands/delete-messages", summary="Delete messages by id (not those being sent)", tags=MESSAGES,
          security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def delete_messages(request: DeleteMessagesRequest, tenant_id: TenantIdQuery = None) -> DeleteMessagesResponse:
    outcome = services().messages.delete(principal(), tenant_id, request.ids)
    return DeleteMessagesResponse(**outcome)


@app.post("/commands/cleanup-messages", summary="Delete settled messages older than a number of seconds",
          tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def cleanup_messages(request: Annotated[CleanupRequest | None, Body()] = None, tenant_id: TenantIdQuery = None
                     ) -> CleanupResponse:
    given = request.older_than_seconds if request is not None else None
    older = RETENTION_SECONDS if given is None else given
    return CleanupResponse(removed=services().messages.cleanup(principal(), tenant_id, older))


@app.post("/commands/run-now", summary="Queue the tenant's due messages now instead of at the next tick",
          tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def run_now(tenant_id: TenantIdQuery = None) -> Ok:
    services().messages.run_now(principal(), tenant_id)
    return Ok()


BatchQuery = Annotated[str | None, Query(min_length=1, max_length=64)]


@app.post("/commands/suspend", summary="Hold the tenant's messages: all, or one batch_code", tags=MESSAGES,
          security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422, conflict="Every batch is already suspended"))
def suspend(tenant_id: TenantIdQuery = None, batch_code: BatchQuery = None) -> BatchState:
    return BatchState(**services().messages.suspend(principal(), tenant_id, batch_code))


@app.post("/commands/activate", summary="Release held messages: all, or one batch_code", tags=MESSAGES,
          security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422,
                                            conflict="Every batch is suspended: activate all batches first"))
def activate(tenant_id: TenantIdQuery = None, batch_code: BatchQuery = None) -> BatchState:
    return BatchState(**services().messages.activate(principal(), tenant_id, batch_code))


@app.get("/command-log", summary="The audit log of commands (admin)", tags=SERVICE, security=TOKEN,
         responses=answers(*TOKEN_ERRORS, 422))
def command_log(
    tenant_id: TenantIdQuery = None,
    since_ts: Annotated[int | None, Query(ge=0)] = None,
    until_ts: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CommandLog:
    principal().require_admin()
    items = services().repo.list_commands(tenant_id, since_ts=since_ts, until_ts=until_ts, limit=limit)
    entries = []
    for item in items:
        try:
            payload = json.loads(item.get("payload") or "null")
        except json.JSONDecodeError:
            payload = item.get("payload")
        entries.append(CommandEntry(id=item["id"], command_ts=item["command_ts"], command=item["command"],
                                    tenant_id=item.get("tenant_id"), payload=payload,
                                    outcome=item.get("outcome"), response_status=item.get("response_status")))
    return CommandLog(commands=entries)


class SuppressionPage(Ok):
    suppressions: list[SuppressionView]
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")


@app.get("/suppressions", summary="The tenant's suppressed addresses (hard bounces and manual entries)",
         tags=SUPPRESSIONS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def list_suppressions(
    tenant_id: TenantIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=254)] = None,
) -> SuppressionPage:
    entries, next_cursor = services().suppressions.list_entries(principal(), tenant_id, limit=limit, after=cursor)
    return SuppressionPage(suppressions=entries, next_cursor=next_cursor)


@app.post("/suppressions", status_code=201, summary="Suppress an address: messages to it are not sent",
          tags=SUPPRESSIONS, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404,
                                                               ok=201, ok_description="Suppressed"))
def add_suppression(request: SuppressionCreate, tenant_id: TenantIdQuery = None) -> Response[Ok]:
    if tenant_id and request.tenant_id and tenant_id != request.tenant_id:
        raise InvalidInputError("tenant_id in the query and in the body differ")
    scoped = request if request.tenant_id or not tenant_id else request.model_copy(update={"tenant_id": tenant_id})
    services().suppressions.add(principal(), scoped)
    return created(Ok())


@app.delete("/suppressions/<address>", summary="Stop suppressing an address", tags=SUPPRESSIONS, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_suppression(address: Annotated[str, Path(max_length=300)], tenant_id: TenantIdQuery = None) -> Ok:
    services().suppressions.remove(principal(), unquote(address), tenant_id)
    return Ok()


# --------------------------------------------------------------------------------------------- idempotency


@lru_cache(maxsize=1)
def _idempotent_add_messages() -> Any:
    """Powertools idempotency around add-messages, keyed by tenant + Idempotency-Key, built lazily."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    table = get_settings(ApiSettings).idempotency_table_name
    if not table:
        raise ConfigurationError("IDEMPOTENCY_TABLE_NAME is not set; Idempotency-Key cannot be honoured")
    config = IdempotencyConfig(
        event_key_jmespath="[scope, key]",
        payload_validation_jmespath="body_hash",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        response_hook=lambda response, _record: {**response, "_replayed": True},
    )
    persistence = DynamoDBPersistenceLayer(table_name=table, key_attr="id")

    def run(request: dict[str, Any], submit: Any) -> dict[str, Any]:
        return dict(submit())

    return config, idempotent_function(data_keyword_argument="request", config=config,
                                       persistence_store=persistence)(run), persistence


def canonical_body_hash(request: AddMessagesRequest) -> str:
    """The hash a request is recognised by: of its parsed JSON with sorted keys, so key order and spacing
    do not make the same request a different one (list order does: it is the order of the messages)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _run_idempotent(who: Principal, tenant_id: str | None, key: str, request: AddMessagesRequest,
                    submit: Any) -> tuple[dict[str, Any], bool]:
    """The first answer for this key, or a new one.

    A submission that fails leaves nothing remembered (Powertools deletes the in-progress record), and the
    client's retry runs it again: the messages it stored are recognised by their content hash (see
    submission.py), so the retry gets the answer the first call should have given. When only remembering
    the answer fails, the answer is still given (the submission is done) and the key is released.
    """
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config, run, persistence = _idempotent_add_messages()
    if app.lambda_context is not None:
        config.register_lambda_context(app.lambda_context)
    scope = f"tenant:{who.tenant_id}" if not who.is_admin else f"admin:{tenant_id or '*'}"
    data = {"scope": scope, "key": key, "body_hash": canonical_body_hash(request)}
    done: list[dict[str, Any]] = []

    def submit_once() -> dict[str, Any]:
        done.append(dict(submit()))
        return done[-1]

    try:
        answer = run(request=data, submit=submit_once)
    except IdempotencyValidationError as exc:
        raise ConflictError("Idempotency-Key was already used with a different request body") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise ThrottledError("a request with this Idempotency-Key is still in progress; retry shortly",
                             retry_after=2) from exc
    except IdempotencyPersistenceLayerError as exc:
        if not done:
            raise
        logger.exception("idempotency record not saved; the key is released", extra={"scope": scope})
        _forget_idempotency_key(persistence, data, exc)
        return done[-1], False
    replayed = bool(answer.pop("_replayed", False))
    return answer, replayed


def _forget_idempotency_key(persistence: Any, data: dict[str, Any], cause: Exception) -> None:
    """Drop the in-progress record of a done submission whose answer could not be saved, so a retry runs
    again (and is recognised by content) instead of waiting for the in-progress record to time out."""
    try:
        persistence.delete_record(data=data, exception=cause)
    except Exception:  # the record then times out with the function (in-progress expiry)
        logger.exception("idempotency record could not be released")


# --------------------------------------------------------------------------------------------- genro-mail-proxy

from mail_proxy.api.compat_api import router as _compat_router  # noqa: E402  (its routes call the ones above)

app.include_router(_compat_router)

from mail_proxy.api.dkim_api import router as _dkim_router  # noqa: E402  (its routes call services() above)

app.include_router(_dkim_router)

from mail_proxy.api.unsubscribe_api import router as _unsubscribe_router  # noqa: E402  (it uses services() above)

app.include_router(_unsubscribe_router)
# genro-mail-proxy serves Swagger UI at /docs and ReDoc at /redoc: here /docs is Swagger UI (the document
# and Swagger UI's assets embedded, as Powertools ships them) and /redoc leads there; both public, like /openapi.json
# (MAIL_PROXY_SWAGGER_UI_BASE_URL serves Swagger UI's assets from elsewhere: a mirror, or a CDN to keep the page small)
app.enable_swagger(path="/docs", title=API_TITLE, version=API_VERSION, swagger_base_url=swagger_ui_base_url())


@app.get("/redoc", include_in_schema=False)
def redoc() -> Response[Any]:
    return Response(status_code=302, content_type="application/json", body={"detail": "see /docs"},
                    headers={"Location": "/docs"})
