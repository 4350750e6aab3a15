"""``GET /status``: messages counted by status, per tenant and in all, and the oldest one still waiting.

A bounded read: at most ``STATUS_MAX_MESSAGES`` messages are counted per call and counting stops after
``STATUS_TIME_BUDGET_SECONDS`` (the answer must come well within API Gateway's 29 s); the tenants left over are
listed as not counted, and the answer says it is truncated.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.models import WAITING_STATUSES, MessageStatus
from mail_proxy.domain.principal import Principal

STATUS_MAX_MESSAGES = 5000  # messages counted per GET /status: the answer must come well within 29 s
STATUS_TIME_BUDGET_SECONDS = 10.0  # then the remaining tenants are listed as not counted
_STARTED = time.monotonic()


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


class Status(BaseModel):
    ok: bool = True
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


def service_status(repo: MailRepository, who: Principal, tenant_id: str | None) -> Status:
    """The caller's tenant, or every tenant (admin without ``tenant_id``)."""
    scope = who.tenant_scope(tenant_id, admin_may_omit=True)
    tenants = [repo.require_tenant(scope)] if scope else repo.list_tenants()
    answer = Status(messages={s.value: 0 for s in MessageStatus})
    budget, deadline = STATUS_MAX_MESSAGES, time.monotonic() + STATUS_TIME_BUDGET_SECONDS
    for tenant in tenants:
        counted = tenant_status(repo, tenant, budget if time.monotonic() < deadline else 0)
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


def tenant_status(repo: MailRepository, tenant: Tenant, limit: int) -> TenantStatus:
    """Counts of up to ``limit`` of the tenant's messages, oldest first.

    Oldest first, so the oldest waiting message found is the oldest there is, even when truncated.
    """
    found, more = repo.message_census(tenant.tenant_id, limit=limit) if limit > 0 else ([], True)
    counts = {s.value: 0 for s in MessageStatus}
    oldest: tuple[int, str] | None = None
    for message_id, state, created_ms in found:
        counts[state] = counts.get(state, 0) + 1
        if state in WAITING_STATUSES and (oldest is None or (created_ms, message_id) < oldest):
            oldest = (created_ms, message_id)
    return TenantStatus(
        tenant_id=tenant.tenant_id, active=tenant.is_active,
        admin_suspended=bool(tenant.admin_suspended),
        reputation_paused=bool(tenant.reputation_paused),
        reputation_paused_reason=tenant.reputation_paused_reason,
        suspended_batches=sorted(tenant.suspended_batch_codes), messages=counts, counted=len(found),
        oldest_waiting_id=oldest[1] if oldest else None,
        oldest_waiting_age_seconds=max(0, clock.now_ts() - oldest[0] // 1000) if oldest else None,
        truncated=more)
