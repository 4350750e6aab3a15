"""The shapes the proxy answers with (docs/design.md, "HTTP contract"), as typed dictionaries.

They are plain ``dict`` at run time, so a field the proxy adds later is simply there; the types only help
an editor and a type checker.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ClientAuthView(TypedDict, total=False):
    method: str
    user: str | None
    has_token: bool
    has_password: bool


class Tenant(TypedDict, total=False):
    tenant_id: str
    name: str | None
    active: bool
    client_base_url: str | None
    client_sync_path: str
    client_attachment_path: str
    client_auth: ClientAuthView | None
    rate_limits: dict[str, int | None] | None
    suspended_batches: list[str]
    has_api_key: bool
    created_at: str | None
    updated_at: str | None


class TenantCreated(TypedDict, total=False):
    ok: bool
    tenant_id: str
    api_key: str
    signing_secret: str


class Account(TypedDict, total=False):
    id: str
    tenant_id: str
    host: str
    port: int
    user: str | None
    tls: str
    limit_per_minute: int | None
    limit_per_hour: int | None
    limit_per_day: int | None
    limit_behavior: str
    has_password: bool
    created_at: str | None
    updated_at: str | None


class Rejection(TypedDict):
    id: str | None
    reason: str


class AddMessagesResult(TypedDict):
    ok: bool
    queued: int
    rejected: list[Rejection]


class HistoryEvent(TypedDict, total=False):
    event_id: str
    event_type: str
    event_ts: int
    description: str | None
    metadata: dict[str, Any] | None
    reported_ts: int | None


class MessageRecord(TypedDict, total=False):
    id: str
    tenant_id: str
    account_id: str | None
    priority: int
    batch_code: str | None
    status: str
    deferred_ts: int | None
    sent_ts: int | None
    error_ts: int | None
    error: str | None
    attempts: int
    created_at: str | None
    updated_at: str | None
    message: dict[str, Any] | None
    history: list[HistoryEvent] | None


class MessagePage(TypedDict):
    ok: bool
    messages: list[MessageRecord]
    next_cursor: str | None


class DeleteResult(TypedDict, total=False):
    ok: bool
    removed: int
    not_found: list[str]
    unauthorized: list[str]
    in_flight: list[str]  # being sent: not removed


class BatchState(TypedDict, total=False):
    ok: bool
    tenant_id: str
    batch_code: str | None
    suspended_batches: list[str]
    pending_messages: int


class CommandEntry(TypedDict, total=False):
    id: str
    command_ts: int
    command: str
    tenant_id: str | None
    payload: Any
    outcome: str | None
    response_status: int | None


class Suppression(TypedDict, total=False):
    address: str
    reason: str | None
    source: str
    created_ts: int
    expires_ts: int | None
    message_id: str | None


class SuppressionPage(TypedDict):
    ok: bool
    suppressions: list[Suppression]
    next_cursor: str | None


FINAL_STATUSES = frozenset({"sent", "error", "bounced"})
