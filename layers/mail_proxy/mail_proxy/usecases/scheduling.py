"""Finding waiting messages that are due and putting them on their send lane.

Used by the scheduler every minute and by ``run-now`` at once. A message is due when its ``due`` time
has passed: its ``deferred_ts`` arrived, its retry time arrived, its lease expired (the sender died), or
it was queued long ago and never claimed. Suspended batches and inactive tenants are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_TTL_SECONDS
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.send_queue import new_event_id
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.message_lifecycle import MessageState
from mail_proxy.domain.models import RETENTION_SECONDS, MessageStatus
from mail_proxy.usecases.ports import MessageStates, SchedulingStore, SendLanes

MAX_PER_TENANT_RUN = 5000
ENQUEUE_GRACE_SECONDS = 900  # a message the scheduler queued and nobody claimed by then is queued again


@dataclass
class ScheduleOutcome:
    queued: int = 0
    skipped_suspended: int = 0


def enqueue_due(repo: SchedulingStore, queue: SendLanes, tenant: Tenant,
                *, limit: int = MAX_PER_TENANT_RUN) -> ScheduleOutcome:
    outcome = ScheduleOutcome()
    tenant_id = tenant.tenant_id
    now = clock.now_ts()
    released = release_held(repo, tenant, now=now)
    due_ids: list[str] = []
    for _, mid in repo.waiting_message_keys(tenant_id, due_before=now):
        due_ids.append(mid)
        if len(due_ids) >= limit:
            break
    due_ids = list(dict.fromkeys([*released, *due_ids]))
    if not due_ids:
        return outcome
    states = repo.get_states(tenant_id, due_ids)
    ready: list[tuple[int, str]] = []
    for mid in due_ids:
        item = states.get(mid)
        if item is None:
            continue
        state = MessageState.from_item(item)
        if state.status not in (MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.SENDING):
            repo.clear_due(tenant_id, mid)
            continue
        if state.lease_expired(now):
            if settle_abandoned(repo, tenant, state, now=now) == MessageStatus.PENDING:
                ready.append((state.priority, mid))
            continue
        if state.status == MessageStatus.SENDING:
            repo.set_due(tenant_id, mid, int(state.lease_until or now))
            continue
        if not tenant.is_sending(state.batch_code):
            repo.apply_transition(tenant_id, mid, state.hold(), now=now)  # out of the due index until released
            outcome.skipped_suspended += 1
            continue
        ready.append((state.priority, mid))
    ready.sort()
    for _, mid in ready:
        repo.set_due(tenant_id, mid, now + ENQUEUE_GRACE_SECONDS)
    failed = set(queue.enqueue(tenant_id, ready))
    for mid in failed:
        repo.set_due(tenant_id, mid, now)
    outcome.queued = len(ready) - len(failed)
    return outcome


def settle_abandoned(repo: MessageStates, tenant: Tenant, state: MessageState, *, now: int
                     ) -> MessageStatus | None:
    """A claim whose lease ran out (its sender died): ended in ``error`` if it died during the SMTP transaction,
    else handed back (pending, to be queued). The status it now has, or None if someone else settled it."""
    transition = state.abandoned(now=now, event_id=new_event_id(), due_ts=now + ENQUEUE_GRACE_SECONDS,
                                 expires_at=None if tenant.reports_enabled else now + RETENTION_SECONDS)
    if not repo.apply_transition(tenant.tenant_id, state.message_id, transition, now=now):
        return None
    if transition.status == MessageStatus.ERROR:
        logger.warning("claim expired during an SMTP transaction; the message is not sent again",
                       extra={"tenant_id": tenant.tenant_id, "message_id": state.message_id})
    return transition.status


def release_held(repo: SchedulingStore, tenant: Tenant, *, now: int, limit: int = MAX_PER_TENANT_RUN
                 ) -> list[str]:
    """Held messages whose tenant and batch send again go back to the due index (due now); their ids.

    One query of the tenant's held messages (an empty one costs half a read unit), so activation through any
    path (activate, tenant update, an administrator's resume) is picked up by the next tick or run-now; past
    ``limit`` held messages, a cursor moves through them a page per tick.
    """
    if not tenant.is_sending(None):
        return []
    held = repo.held_message_ids(tenant.tenant_id, limit=limit)
    if not held:
        return []
    if len(held) >= limit:
        # more than one page (a batch still suspended holds many): each tick reads the next page, so no
        # number of them can hide the messages of a batch that sends again
        after = repo.get_held_cursor(tenant.tenant_id)
        if after is not None:
            held = repo.held_message_ids(tenant.tenant_id, limit=limit, after=after)
        repo.set_held_cursor(tenant.tenant_id, held[-1] if len(held) >= limit else None)
        if not held:
            return []
    states = repo.get_states(tenant.tenant_id, held)
    released = []
    for mid in held:
        item = states.get(mid)
        if item is None:
            continue
        state = MessageState.from_item(item)
        if state.status == MessageStatus.SENDING:
            # claimed by a sender that read it before the hold: watched until its lease ends, never dropped
            repo.set_due(tenant.tenant_id, mid, int(state.lease_until or now))
        elif state.status not in (MessageStatus.PENDING, MessageStatus.DEFERRED):
            repo.clear_due(tenant.tenant_id, mid)
        elif tenant.is_sending(state.batch_code):
            due = max(now, state.deferred_ts or 0)
            repo.set_due(tenant.tenant_id, mid, due)
            if state.payload_version:
                repo.set_payload_expiry(tenant.tenant_id, mid, state.payload_version, due + PAYLOAD_TTL_SECONDS)
            if due <= now:
                released.append(mid)
    return released


RECONCILE_AFTER_SECONDS = 600
FIRST_LOOK_BACK_SECONDS = 24 * 3600
RECONCILE_PAGE = 1000


def reconcile_unqueued(repo: SchedulingStore, queue: SendLanes, tenant: Tenant) -> int:
    """Queue again what was accepted but never reached a queue, or whose sender died.

    Messages queued at submission carry no due time (it would cost index writes on every message).
    If the API died between storing and queueing, or a sender died holding a claim and its record is
    gone, nothing would ever pick the message up: so once a message is ten minutes old, the scheduler
    looks at it exactly once (a per-tenant checkpoint over the creation-time index) and gives any that is
    still waiting without a due time a due time and a queue record.
    """
    tenant_id = tenant.tenant_id
    now = clock.now_ts()
    now_ms = int(clock.now() * 1000)
    checkpoint = repo.get_scheduler_checkpoint(tenant_id)
    start = checkpoint if checkpoint is not None else now_ms - FIRST_LOOK_BACK_SECONDS * 1000
    upto = now_ms - RECONCILE_AFTER_SECONDS * 1000
    if upto <= start:
        return 0
    states = repo.states_created_between(tenant_id, start, upto, limit=RECONCILE_PAGE)
    ready: list[tuple[int, str]] = []
    sending = tenant.is_sending(None)
    for item in states:
        state = MessageState.from_item(item)
        if state.watched:
            continue  # watched through the due index (or held) already
        if state.lease_expired(now):
            if settle_abandoned(repo, tenant, state, now=now) == MessageStatus.PENDING and sending:
                ready.append((state.priority, state.message_id))
        elif state.status == MessageStatus.PENDING:
            if sending and tenant.is_sending(state.batch_code):
                repo.set_due(tenant_id, state.message_id, now + ENQUEUE_GRACE_SECONDS)
                ready.append((state.priority, state.message_id))
            else:
                repo.apply_transition(tenant_id, state.message_id, state.hold(), now=now)
        elif state.status == MessageStatus.SENDING:
            repo.set_due(tenant_id, state.message_id, int(state.lease_until or now))
    ready.sort()
    failed = set(queue.enqueue(tenant_id, ready))
    for mid in failed:
        repo.set_due(tenant_id, mid, now)
    next_checkpoint = states[-1]["created_ms"] + 1 if len(states) >= RECONCILE_PAGE else upto
    repo.set_scheduler_checkpoint(tenant_id, next_checkpoint)
    return len(ready) - len(failed)


STOP_MARGIN_MS = 10_000


@dataclass
class TickOutcome:
    queued: int = 0
    recovered: int = 0
    held: int = 0


def run_tick(repo: SchedulingStore, queue: SendLanes, tenants: list[Tenant],
             remaining_ms: Callable[[], int]) -> TickOutcome:
    """One scheduler tick over every tenant, stopping while there is time left to finish cleanly."""
    total = TickOutcome()
    for tenant in tenants:
        if remaining_ms() < STOP_MARGIN_MS:
            logger.warning("scheduler ran out of time; the next tick continues")
            break
        try:
            outcome = enqueue_due(repo, queue, tenant)
            found = reconcile_unqueued(repo, queue, tenant)
        except Exception:  # one tenant's failure stays its own: the next tick tries it again
            logger.exception("tenant not scheduled; the next tick tries again",
                             extra={"tenant_id": tenant.tenant_id})
            continue
        if outcome.queued or outcome.skipped_suspended or found:
            logger.info("tenant scheduled", extra={"tenant_id": tenant.tenant_id, "queued": outcome.queued,
                                                   "recovered": found, "held": outcome.skipped_suspended})
        total.queued += outcome.queued
        total.held += outcome.skipped_suspended
        total.recovered += found
    return total
