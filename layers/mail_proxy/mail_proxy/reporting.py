"""Delivery reports: every event of a tenant's messages reaches its application, in order, at least once.

Path: a message's STATE item gains an event → the table stream → ``route_stream_records`` puts the new
events, per tenant, on a FIFO reports queue (message group = tenant, so one tenant's dead endpoint never
holds up another's) → ``ReportDelivery.deliver`` POSTs them to ``client_base_url + client_sync_path``,
authenticated and signed. Only a 2xx acknowledges a batch, and only then are the events marked reported.
Failures are retried with exponential backoff and jitter for more than 24 hours (the queue's
maxReceiveCount), then the batch is parked in the dead-letter queue, an alarm fires, and ``run-now`` or a
redrive sends it again. Each event carries a stable ``event_id`` so receivers can drop duplicates.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy import clock
from mail_proxy.client_auth import client_auth_headers
from mail_proxy.domain import FINAL_STATUSES
from mail_proxy.observability import id_list, logger
from mail_proxy.outbound_http import OutboundFailed, OutboundRefused, post
from mail_proxy.report_queue import ReportQueue
from mail_proxy.report_signing import HEADER, signature_header
from mail_proxy.repository import MailRepository, StateChange, state_change_from_stream
from mail_proxy.secrets_config import decrypt
from mail_proxy.tenants import DEFAULT_SYNC_PATH, signing_secret_context

EVENTS_PER_REPORT = 100
MAX_SYNCS_PER_RECORD = 5  # `queued > 0` asks for another sync at once; bounded so one tenant cannot loop us
HEARTBEAT_SECONDS = 300
RETENTION_SECONDS = 7 * 24 * 3600
BACKOFF_SECONDS = (30, 60, 120, 300, 600, 1200, 2400, 3600)
MAX_QUIET_SECONDS = 12 * 3600  # SQS cannot hide a message longer
IO_MARGIN_MS = 5_000  # a report POST ends this long before the function would, whatever the application does


class RetryLater(Exception):
    """Do not acknowledge the report record; let it come back after ``delay`` seconds."""

    def __init__(self, reason: str, delay: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = max(0, min(int(delay), MAX_QUIET_SECONDS))


def backoff(receive_count: int, schedule: Sequence[int] = BACKOFF_SECONDS) -> int:
    """Seconds before the next attempt of a report batch: doubling from 30 s to an hour, ±20 % jitter."""
    base = schedule[min(max(receive_count, 1), len(schedule)) - 1]
    return round(base * random.uniform(0.8, 1.2))


def parse_backoff(text: str | None) -> tuple[int, ...]:
    if not text:
        return BACKOFF_SECONDS
    schedule = tuple(int(part) for part in text.split(",") if part.strip())
    if not schedule or any(v < 0 for v in schedule):
        raise ValueError("report backoff must be a comma-separated list of non-negative seconds")
    return schedule


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
    tenants: dict[str, dict[str, Any] | None] = {}
    queued = 0
    for tenant_id, items in by_tenant.items():
        if tenant_id not in tenants:
            tenants[tenant_id] = repo.get_tenant(tenant_id)
        tenant = tenants[tenant_id]
        if tenant is None or not tenant.get("client_base_url"):
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


def queue_heartbeats(repo: MailRepository, queue: ReportQueue, tenants: Iterable[dict[str, Any]]) -> int:
    """An empty sync to every active tenant with a URL not synced for 5 minutes (and not asking quiet)."""
    now = clock.now_ts()
    sent = 0
    for tenant in tenants:
        if not tenant.get("active", True) or not tenant.get("client_base_url"):
            continue
        if (tenant.get("report_quiet_until") or 0) > now:
            continue
        if now - int(tenant.get("last_sync_ts") or 0) < HEARTBEAT_SECONDS - 30:
            continue
        tid = tenant["tenant_id"]
        queue.send(tid, {"tenant_id": tid, "kind": "heartbeat", "events": []}, f"hb-{tid}-{now // 60}")
        sent += 1
    return sent


def sync_now(repo: MailRepository, queue: ReportQueue, tenant_id: str) -> int:
    """``run-now``: forget any quiet period, bring parked reports back, and sync at once."""
    tenant = repo.get_tenant(tenant_id)
    if tenant is None or not tenant.get("client_base_url"):
        return 0
    repo.set_sync_state(tenant_id, last_sync_ts=int(tenant.get("last_sync_ts") or 0), quiet_until=None)
    moved = queue.redrive_parked(tenant_id)
    queue.send(tenant_id, {"tenant_id": tenant_id, "kind": "heartbeat", "events": []},
               f"run-{tenant_id}-{clock.now_ts()}")
    return moved


# ---------------------------------------------------------------------------------------------- delivery


@dataclass
class SyncOutcome:
    events_acknowledged: int = 0
    syncs: int = 0


class ReportDelivery:
    def __init__(self, repo: MailRepository, *, allow_loopback: bool,
                 backoff_seconds: Sequence[int] = BACKOFF_SECONDS) -> None:
        self.repo = repo
        self.allow_loopback = allow_loopback
        self.backoff_seconds = tuple(backoff_seconds)

    def deliver(self, record: dict[str, Any], receive_count: int, *,
                remaining_ms: Callable[[], int] | None = None) -> SyncOutcome:
        """POSTs the record's events; each POST ends ``IO_MARGIN_MS`` before the function would (given
        ``remaining_ms``), so a slow application cannot make the function time out on other tenants' records."""
        tenant_id = record["tenant_id"]
        tenant = self.repo.get_tenant(tenant_id)
        outcome = SyncOutcome()
        if tenant is None or not tenant.get("client_base_url"):
            logger.info("report dropped: tenant gone or without a report URL", extra={"tenant_id": tenant_id})
            return outcome
        now = clock.now_ts()
        quiet_until = int(tenant.get("report_quiet_until") or 0)
        if quiet_until > now:
            raise RetryLater("the application asked for quiet (next_sync_after)", quiet_until - now)
        events: list[dict[str, Any]] = list(record.get("events") or [])
        url = tenant["client_base_url"].rstrip("/") + (tenant.get("client_sync_path") or DEFAULT_SYNC_PATH)
        headers = client_auth_headers(tenant)
        secrets_in_use = self._signing_secrets(tenant)
        batch = events
        for _sync in range(MAX_SYNCS_PER_RECORD):
            deadline = None if remaining_ms is None else \
                time.monotonic() + max(remaining_ms() - IO_MARGIN_MS, 0) / 1000
            answer = self._post(url, headers, secrets_in_use, batch, receive_count, tenant_id, deadline)
            outcome.syncs += 1
            if batch:
                self._mark_reported(tenant_id, batch)
                outcome.events_acknowledged += len(batch)
            queued, next_sync_after = _sync_answer(answer)
            quiet = next_sync_after if next_sync_after and next_sync_after > clock.now_ts() else None
            self.repo.set_sync_state(tenant_id, last_sync_ts=clock.now_ts(), quiet_until=quiet)
            if quiet or queued <= 0:
                break
            batch = []  # the application has more to push: sync again at once
        return outcome

    def _post(self, url: str, headers: dict[str, str], secrets_in_use: Sequence[str],
              batch: Sequence[dict[str, Any]], receive_count: int, tenant_id: str,
              deadline: float | None = None) -> bytes:
        public = [{k: v for k, v in item.items() if not k.startswith("_")} for item in batch]
        body = json.dumps({"delivery_report": public}, separators=(",", ":"), ensure_ascii=False).encode()
        sent_headers = {**headers, "Content-Type": "application/json", "User-Agent": "mail-proxy-reporter/1"}
        if secrets_in_use:
            sent_headers[HEADER] = signature_header(secrets_in_use, clock.now_ts(), body)
        try:
            answer = post(url, body, sent_headers, allow_loopback=self.allow_loopback, deadline=deadline)
        except OutboundRefused as exc:
            logger.warning("report URL refused", extra={"tenant_id": tenant_id, "reason": str(exc)})
            raise RetryLater(f"report URL refused: {exc}", backoff(receive_count, self.backoff_seconds)) from exc
        except OutboundFailed as exc:
            raise RetryLater(f"report call failed: {exc}", backoff(receive_count, self.backoff_seconds)) from exc
        if not 200 <= answer.status < 300:
            raise RetryLater(f"application answered {answer.status}", backoff(receive_count, self.backoff_seconds))
        return answer.body

    def _mark_reported(self, tenant_id: str, batch: Sequence[dict[str, Any]]) -> None:
        now = clock.now_ts()
        per_message: dict[str, list[tuple[int, str]]] = defaultdict(list)
        final: dict[str, bool] = {}
        for item in batch:
            message_id, index, is_final = item["_ref"]
            per_message[message_id].append((int(index), str(item["event_id"])))
            final[message_id] = final.get(message_id, False) or bool(is_final)
        for message_id, events in per_message.items():
            expires = now + RETENTION_SECONDS if final[message_id] else None
            self.repo.mark_events_reported(tenant_id, message_id, events, now, expires)

    @staticmethod
    def _signing_secrets(tenant: dict[str, Any]) -> list[str]:
        ctx = signing_secret_context(tenant["tenant_id"])
        found = []
        if tenant.get("signing_secret"):
            found.append(decrypt(tenant["signing_secret"], context=ctx))
        grace_until = int(tenant.get("previous_signing_valid_until") or 0)
        if tenant.get("previous_signing_secret") and grace_until > clock.now_ts():
            found.append(decrypt(tenant["previous_signing_secret"], context=ctx))
        return found


def _sync_answer(body: bytes) -> tuple[int, int | None]:
    """``queued`` and ``next_sync_after`` from the application's answer; a body that is not JSON is fine."""
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 0, None
    if not isinstance(data, dict):
        return 0, None
    queued = data.get("queued")
    next_sync = data.get("next_sync_after")
    return (queued if isinstance(queued, int) and not isinstance(queued, bool) else 0,
            int(next_sync) if isinstance(next_sync, int | float) and not isinstance(next_sync, bool) else None)
