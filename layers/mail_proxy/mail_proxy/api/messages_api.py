"""Message routes: queue messages (with ``Idempotency-Key``), list and search them, read one, delete, clean up,
run the tenant's due messages now, and suspend or activate its batches."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

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
from mail_proxy.api.idempotency import run_idempotent
from mail_proxy.api.schemas import MESSAGES, Ok, TenantIdQuery, path_id
from mail_proxy.api.services import principal, services
from mail_proxy.domain.message_models import MessageIn, MessageRecord
from mail_proxy.domain.models import MAX_MESSAGES_PER_CALL, RETENTION_SECONDS, MessageStatus
from mail_proxy.usecases.messages import MessageSearch

router = APIGatewayHttpRouter()
MAX_SEARCH_TS = 10**10 - 1  # epoch seconds in ten digits (until 2286)

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


BatchQuery = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.post("/commands/add-messages",
             summary="Queue messages; each invalid one is rejected on its own, with its reason",
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
        answer, replayed = run_idempotent(who, tenant_id, idempotency_key, request, submit)
    else:
        answer, replayed = submit(), False
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(status_code=200, content_type="application/json",
                    body=AddMessagesResponse.model_validate(answer), headers=headers)


@router.get("/messages", summary="The tenant's messages, oldest first, a page at a time; filtered by status, "
                                 "recipient, subject, batch_code and creation time (docs/deliverability.md#search)",
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


@router.get("/messages/<message_id>", summary="One message with its status and history; percent-encode the id",
            tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def get_message(message_id: PathId, tenant_id: TenantIdQuery = None) -> MessageRecord:
    # ids may hold '/', '?', '#', '%': clients percent-encode them in the path
    return services().messages.get(principal(), path_id(message_id, "message_id"), tenant_id)


@router.post("/commands/delete-messages", summary="Delete messages by id (not those being sent)", tags=MESSAGES,
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def delete_messages(request: DeleteMessagesRequest, tenant_id: TenantIdQuery = None) -> DeleteMessagesResponse:
    outcome = services().messages.delete(principal(), tenant_id, request.ids)
    return DeleteMessagesResponse(**outcome)


@router.post("/commands/cleanup-messages", summary="Delete settled messages older than a number of seconds",
             tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404))
def cleanup_messages(request: Annotated[CleanupRequest | None, Body()] = None, tenant_id: TenantIdQuery = None
                     ) -> CleanupResponse:
    given = request.older_than_seconds if request is not None else None
    older = RETENTION_SECONDS if given is None else given
    return CleanupResponse(removed=services().messages.cleanup(principal(), tenant_id, older))


@router.post("/commands/run-now", summary="Queue the tenant's due messages now instead of at the next tick",
             tags=MESSAGES, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def run_now(tenant_id: TenantIdQuery = None) -> Ok:
    services().messages.run_now(principal(), tenant_id)
    return Ok()


@router.post("/commands/suspend", summary="Hold the tenant's messages: all, or one batch_code", tags=MESSAGES,
             security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422,
                                               conflict="Every batch is already suspended"))
def suspend(tenant_id: TenantIdQuery = None, batch_code: BatchQuery = None) -> BatchState:
    return BatchState(**services().messages.suspend(principal(), tenant_id, batch_code))


@router.post("/commands/activate", summary="Release held messages: all, or one batch_code", tags=MESSAGES,
             security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, 422,
                                               conflict="Every batch is suspended: activate all batches first"))
def activate(tenant_id: TenantIdQuery = None, batch_code: BatchQuery = None) -> BatchState:
    return BatchState(**services().messages.activate(principal(), tenant_id, batch_code))
