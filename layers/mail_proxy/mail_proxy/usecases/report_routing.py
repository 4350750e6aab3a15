"""The report router's side of delivery reports: new events of a tenant's messages, read from the table's stream,
become records on the tenant's FIFO group of the reports queue; heartbeats and run-now ask for a sync.

What a record becomes at the tenant's application is :mod:`mail_proxy.usecases.reporting`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository, StateChange, state_change_from_stream
from mail_proxy.adapters.observability import id_list, logger
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.models import FINAL_STATUSES

EVENTS_PER_REPORT = 100
HEARTBEAT_SECONDS = 300
SYNC_PENDING_STALE_SECONDS = 2 * 24 * 3600  # an empty sync pending longer is taken as lost
KIND_EVENTS = "events"
KIND_SYNC = "heartbeat"  # an empty sync (the scheduler's heartbeat or run-now's)


def report_item(message_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``delivery_report`` in the shape genro-mail-proxy clients parse, plus ``event_id``."""
    kind = event.get("type")
    ts = event.get("ts")
    metadata = event.get("metadata") or {}
    item: dict[str, Any] = {"id": message_id, "event_id": event.get("event_id"), "event": kind}
    if kind == "sent":
        item["sent_ts"] = ts
        if metadata.get("refused"):
            item["refused"] = metadata["refused"]
        if metadata.get("suppressed"):
            item["suppressed"] = metadata["suppressed"]
    elif kind == "error":
        item.update(error_ts=ts, error=event.get("description"))
    elif kind == "deferred":
        item.update(deferred_ts=metadata.get("retry_at", ts), deferred_reason=event.get("description"))
    elif kind == "bounce":
        item.update(bounce_ts=ts, bounce_type=metadata.get("bounce_type"), bounce_code=metadata.get("bounce_code"),
                    bounce_reason=event.get("description"))
    elif isinstance(kind, str) and kind.startswith("pec_"):
        item.update(pec_event=kind, pec_ts=ts)
        if event.get("description"):
            item["pec_details"] = event["description"]
    else:
        item.update(event_ts=ts, description=event.get("description"))
        if metadata:
            item["details"] = metadata
    return item


# ---------------------------------------------------------------------------------------------- routing


def route_stream_records(repo: MailRepository, queue: ReportQueue, records: Iterable[dict[str, Any]]) -> int:
    """Stream records → report records on the FIFO queue; returns the number of events queued.

    Only tenants with a report URL get reports. A retried stream batch sends the same report records,
    which the FIFO queue drops by their deduplication id.
    """
    changes: list[StateChange] = []
    stream_ids: dict[str, list[str]] = defaultdict(list)  # the stream event ids behind each tenant's events
    for record in records:
        change = _state_change(record)
        if change is not None:
            changes.append(change)
            stream_ids[change.tenant_id].append(str(record.get("eventID")))
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        final = change.status in FINAL_STATUSES
        for index, event in change.events:
            by_tenant[change.tenant_id].append(
                {**report_item(change.message_id, event), "_ref": [change.message_id, index, final]})
    tenants: dict[str, Tenant | None] = {}
    queued = 0
    for tenant_id, items in by_tenant.items():
        if tenant_id not in tenants:
            tenants[tenant_id] = repo.get_tenant(tenant_id)
        tenant = tenants[tenant_id]
        if tenant is None or not tenant.reports_enabled:
            logger.debug("events not reported: tenant gone or without a report URL",
                         extra={"tenant_id": tenant_id, "events": len(items)})
            continue
        for i in range(0, len(items), EVENTS_PER_REPORT):
            chunk = items[i : i + EVENTS_PER_REPORT]
            dedup = hashlib.sha256("|".join(str(e["event_id"]) for e in chunk).encode()).hexdigest()
            queue.send(tenant_id, {"tenant_id": tenant_id, "kind": "events", "events": chunk}, dedup)
            queued += len(chunk)
            logger.info("report events queued", extra={
                "tenant_id": tenant_id, "events": len(chunk), "message_ids": id_list(dict.fromkeys(
                    str(e["id"]) for e in chunk)), "stream_event_ids": id_list(stream_ids[tenant_id])})
    return queued


def _state_change(record: dict[str, Any]) -> StateChange | None:
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    return state_change_from_stream(record)


def queue_heartbeats(repo: MailRepository, queue: ReportQueue, tenants: Iterable[Tenant]) -> int:
    """An empty sync to every active tenant with a URL not synced for 5 minutes (and not asking quiet).

    At most one empty sync per tenant is pending: while one waits (the endpoint is down and it is retried
    with backoff, or it queues behind the tenant's failing reports) no other is queued.
    """
    now = clock.now_ts()
    sent = 0
    for tenant in tenants:
        if not tenant.is_active or not tenant.reports_enabled:
            continue
        if (tenant.report_quiet_until or 0) > now:
            continue
        if now - int(tenant.last_sync_ts or 0) < HEARTBEAT_SECONDS - 30:
            continue
        if _sync_pending(tenant, now):
            continue
        if request_sync(repo, queue, tenant.tenant_id):
            sent += 1
    return sent


def _sync_pending(tenant: Tenant, now: int) -> bool:
    pending_since = int(tenant.sync_pending_ts or 0)
    return bool(tenant.sync_pending) and pending_since > now - SYNC_PENDING_STALE_SECONDS


def request_sync(repo: MailRepository, queue: ReportQueue, tenant_id: str) -> bool:
    """Queue an empty sync unless one is pending already; True if one was queued."""
    now = clock.now_ts()
    sync_id = f"sync-{uuid.uuid4().hex}"
    if not repo.claim_pending_sync(tenant_id, sync_id, now=now, stale_before=now - SYNC_PENDING_STALE_SECONDS):
        return False
    try:
        queue.send(tenant_id, {"tenant_id": tenant_id, "kind": KIND_SYNC, "events": [], "sync_id": sync_id}, sync_id)
    except Exception:
        repo.clear_pending_sync(tenant_id, sync_id)  # not queued: let the next tick try again
        raise
    return True


def sync_now(repo: MailRepository, queue: ReportQueue, tenant_id: str, *, redrive: bool = True) -> int:
    """``run-now``: end the quiet period and backoff at once, bring parked reports back, and sync.

    The record hidden for quiet or backoff (its receipt is kept on the tenant item) is made visible again,
    so the tenant's FIFO group moves now; every parked record of the tenant goes back to the reports queue
    (order per message is kept by ``ReportDelivery``, which reads the events from the table).
    """
    tenant = repo.get_tenant(tenant_id)
    if tenant is None or not tenant.reports_enabled:
        return 0
    receipt = repo.end_report_wait(tenant_id)
    if receipt:
        queue.reveal(receipt)
    moved = queue.redrive_parked(tenant_id) if redrive else 0
    request_sync(repo, queue, tenant_id)
    return moved


def sync_all_now(repo: MailRepository, queue: ReportQueue, tenants: Iterable[Tenant]) -> int:
    """The admin's ``run-now`` without a tenant: redrive every parked report of every tenant in one pass
    over the parked queue, then end each tenant's quiet period and backoff and sync it."""
    moved = queue.redrive_parked(None)
    for tenant in tenants:
        sync_now(repo, queue, tenant.tenant_id, redrive=False)
    return moved
