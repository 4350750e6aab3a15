"""Finding waiting messages that are due and putting them on their send lane.

Used by the scheduler every minute and by ``run-now`` at once. A message is due when its ``due`` time
has passed: its ``deferred_ts`` arrived, its retry time arrived, its lease expired (the sender died), or
it was queued long ago and never claimed. Suspended batches and inactive tenants are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy import clock
from mail_proxy.domain import MessageStatus
from mail_proxy.repository import MailRepository
from mail_proxy.send_queue import SendQueue
from mail_proxy.submission import ENQUEUE_GRACE_SECONDS, tenant_is_sending

MAX_PER_TENANT_RUN = 5000


@dataclass
class ScheduleOutcome:
    queued: int = 0
    skipped_suspended: int = 0


def enqueue_due(repo: MailRepository, queue: SendQueue, tenant: dict[str, Any],
                *, limit: int = MAX_PER_TENANT_RUN) -> ScheduleOutcome:
    outcome = ScheduleOutcome()
    tenant_id = tenant["tenant_id"]
    now = clock.now_ts()
    due_ids: list[str] = []
    for _, mid in repo.waiting_message_keys(tenant_id, due_before=now):
        due_ids.append(mid)
        if len(due_ids) >= limit:
            break
    if not due_ids:
        return outcome
    states = repo.get_states(tenant_id, due_ids)
    ready: list[tuple[int, str]] = []
    for mid in due_ids:
        state = states.get(mid)
        if state is None or state["status"] not in (MessageStatus.PENDING, MessageStatus.DEFERRED,
                                                     MessageStatus.SENDING):
            if state is not None:
                repo.clear_due(tenant_id, mid)
            continue
        if not tenant_is_sending(tenant, state.get("batch_code")):
            outcome.skipped_suspended += 1
            continue
        if state["status"] == MessageStatus.SENDING and (state.get("lease_until") or 0) > now:
            repo.set_due(tenant_id, mid, state["lease_until"])
            continue
        ready.append((state.get("priority", 2), mid))
    ready.sort()
    for _, mid in ready:
        repo.set_due(tenant_id, mid, now + ENQUEUE_GRACE_SECONDS)
    failed = set(queue.enqueue(tenant_id, ready))
    for mid in failed:
        repo.set_due(tenant_id, mid, now)
    outcome.queued = len(ready) - len(failed)
    return outcome
