"""Delivery reports: every event of a tenant's messages reaches its application, in order, at least once.

Path: a message's STATE item gains an event → the table stream → ``route_stream_records`` puts the new
events, per tenant, on a FIFO reports queue (message group = tenant, so one tenant's dead endpoint never
holds up another's) → ``ReportDelivery.handle`` POSTs them to ``client_base_url + client_sync_path``,
authenticated and signed. Only a 2xx acknowledges a batch, and only then are the events marked reported.

The queue record only says which events are new; what is POSTed is read from the table at that moment:
for each message of the record, every event not yet acknowledged up to the newest one the record names,
in the order they happened. So a message's events reach the application in order even when an earlier
record of it was parked, redriven behind later ones, or is still waiting; and an acknowledged event is
never POSTed again (a redriven record whose events were all acknowledged posts nothing).

Failed POSTs are retried with exponential backoff and jitter for more than 24 hours (``PARK_AFTER_ATTEMPTS``
failed attempts, counted by the reporter on the tenant item, so hides while the application asked for quiet
do not count), then the record is parked in the parked queue, an alarm fires, and ``run-now`` redrives it.
Each event carries a stable ``event_id`` so receivers can drop duplicates.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.outbound_http import OutboundFailed, OutboundRefused, post
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.models import RETENTION_SECONDS
from mail_proxy.security.report_signing import HEADER, signature_header
from mail_proxy.usecases.client_auth import client_auth_headers
from mail_proxy.usecases.report_routing import KIND_SYNC, report_item
from mail_proxy.usecases.tenants import DEFAULT_SYNC_PATH, signing_secrets_in_use

MAX_SYNCS_PER_RECORD = 5  # `queued > 0` asks for another sync at once; bounded so one tenant cannot loop us
BACKOFF_SECONDS = (30, 60, 120, 300, 600, 1200, 2400, 3600)
MAX_HIDE_SECONDS = 12 * 3600  # SQS cannot hide a message longer
MAX_QUIET_SECONDS = 3600  # ``next_sync_after`` further away than this is clamped to it
PARK_AFTER_ATTEMPTS = 40  # failed POSTs of one record: with BACKOFF_SECONDS that is more than 24 hours
PARK_AFTER_AGE_SECONDS = 12 * 24 * 3600  # a record failing this long is parked before SQS's 14-day retention
IO_MARGIN_MS = 5_000  # a report POST ends this long before the function would, whatever the application does


class RetryLater(Exception):
    """Do not acknowledge the report record; let it come back after ``delay`` seconds.

    ``attempts`` is the record's count of failed POSTs (None for a hide that is not a failure: quiet).
    """

    def __init__(self, reason: str, delay: int, attempts: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = max(0, min(int(delay), MAX_HIDE_SECONDS))
        self.attempts = attempts


class ParkReport(Exception):
    """The record failed for too long: move it to the parked queue (alarmed) until ``run-now``."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class SyncRefused(Exception):
    """One POST was not acknowledged (refused URL, network failure, non-2xx)."""


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


# ---------------------------------------------------------------------------------------------- delivery


@dataclass
class SyncOutcome:
    events_acknowledged: int = 0
    syncs: int = 0
    skipped: bool = False  # nothing to POST: every event was acknowledged already, or a sync dropped
    parked: bool = False
    attempts: int = 0


class ReportDelivery:
    def __init__(self, repo: MailRepository, queue: ReportQueue | None = None, *, allow_loopback: bool,
                 backoff_seconds: Sequence[int] = BACKOFF_SECONDS) -> None:
        self.repo = repo
        self.queue = queue or ReportQueue(None, None)
        self.allow_loopback = allow_loopback
        self.backoff_seconds = tuple(backoff_seconds)

    def handle(self, body: dict[str, Any], *, record_id: str, receipt_handle: str, sent_ts: int,
               remaining_ms: Callable[[], int] | None = None) -> SyncOutcome:
        """Deliver one report record; hide it for its backoff (RetryLater re-raised) or park it."""
        tenant_id = str(body.get("tenant_id"))
        try:
            return self.deliver(body, record_id=record_id, sent_ts=sent_ts, remaining_ms=remaining_ms)
        except RetryLater as later:
            self.queue.delay(receipt_handle, later.delay)
            self.repo.remember_hidden_report(tenant_id, receipt_handle)  # run-now reveals it at once
            raise
        except ParkReport as park:
            self.queue.park(tenant_id, body, record_id)
            return SyncOutcome(parked=True, attempts=park.attempts)

    def deliver(self, record: dict[str, Any], *, record_id: str = "", sent_ts: int | None = None,
                remaining_ms: Callable[[], int] | None = None) -> SyncOutcome:
        """POSTs the record's events; each POST ends ``IO_MARGIN_MS`` before the function would (given
        ``remaining_ms``), so a slow application cannot make the function time out on other tenants' records."""

        def deadline() -> float | None:
            return None if remaining_ms is None else time.monotonic() + max(remaining_ms() - IO_MARGIN_MS, 0) / 1000

        tenant_id = record["tenant_id"]
        tenant = self.repo.get_tenant(tenant_id)
        outcome = SyncOutcome()
        if tenant is None or not tenant.client_base_url:
            logger.info("report dropped: tenant gone or without a report URL", extra={"tenant_id": tenant_id})
            return outcome
        is_sync = record.get("kind") == KIND_SYNC
        now = clock.now_ts()
        quiet_until = int(tenant.report_quiet_until or 0)
        age = now - sent_ts if sent_ts else 0
        if quiet_until > now:
            if is_sync:  # nothing to deliver: the application asked not to be called now
                self._sync_done(tenant_id, record)
                outcome.skipped = True
                return outcome
            if age >= PARK_AFTER_AGE_SECONDS:  # an application always asking quiet must not lose it silently
                raise ParkReport("waited for quiet periods to end for 12 days", 0)
            raise RetryLater("the application asked for quiet (next_sync_after)", quiet_until - now)
        events: list[dict[str, Any]] = list(record.get("events") or [])
        batch = self._unreported_in_order(tenant_id, events)
        if events and not batch:
            outcome.skipped = True  # acknowledged already (through a later record of the same messages)
            return outcome
        url = tenant.client_base_url.rstrip("/") + (tenant.client_sync_path or DEFAULT_SYNC_PATH)
        headers = client_auth_headers(tenant)
        secrets_in_use = self._signing_secrets(tenant)
        try:
            answer = self._post(url, headers, secrets_in_use, batch, tenant_id, deadline())
        except SyncRefused as refused:
            attempts = self.repo.count_report_failure(tenant_id, record_id)
            if attempts < PARK_AFTER_ATTEMPTS and age < PARK_AFTER_AGE_SECONDS:
                raise RetryLater(str(refused), backoff(attempts, self.backoff_seconds), attempts) from refused
            if not is_sync:
                raise ParkReport(str(refused), attempts) from refused
            self._sync_done(tenant_id, record)  # an empty sync has nothing to park: the next tick sends another
            outcome.skipped = True
            outcome.attempts = attempts
            return outcome
        outcome.syncs = 1
        if batch:
            # the application has them: marking them is retried through transient table errors, since a
            # record that fails now would POST them again
            _persist(lambda: self._mark_reported(tenant_id, batch), what="events marked reported")
            outcome.events_acknowledged = len(batch)
        # acknowledged: an odd answer, a failed follow-up or a bookkeeping write never fails the record
        queued, quiet = _sync_answer(answer, clock.now_ts())
        _persist(lambda: self.repo.set_sync_state(tenant_id, last_sync_ts=clock.now_ts(), quiet_until=quiet,
                                                  acknowledged=True), what="sync state", required=False)
        if is_sync:
            _persist(lambda: self._sync_done(tenant_id, record), what="pending sync cleared", required=False)
        while not quiet and queued > 0 and outcome.syncs < MAX_SYNCS_PER_RECORD:
            try:  # the application has more to push: sync again at once
                answer = self._post(url, headers, secrets_in_use, [], tenant_id, deadline())
            except SyncRefused as refused:
                logger.warning("follow-up sync failed; the next heartbeat asks again",
                               extra={"tenant_id": tenant_id, "reason": str(refused)})
                break
            outcome.syncs += 1
            queued, quiet = _sync_answer(answer, clock.now_ts())
            self.repo.set_sync_state(tenant_id, last_sync_ts=clock.now_ts(), quiet_until=quiet)
        return outcome

    def _sync_done(self, tenant_id: str, record: dict[str, Any]) -> None:
        if record.get("sync_id"):
            self.repo.clear_pending_sync(tenant_id, str(record["sync_id"]))

    def _unreported_in_order(self, tenant_id: str, carried: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """What to POST for a record: per message, every unacknowledged event up to the newest it names.

        Read from the table (consistently), so an earlier event still parked or waiting goes first and an
        acknowledged one never goes again. An event whose message is gone or was replaced (its events start
        over) cannot be ordered or marked: it is sent as carried.
        """
        mids = list(dict.fromkeys(str(item["_ref"][0]) for item in carried if item.get("_ref")))
        states = self.repo.get_states(tenant_id, mids) if mids else {}
        upto: dict[str, int] = {}
        final: dict[str, bool] = {}
        loose: list[dict[str, Any]] = []
        for item in carried:
            ref = item.get("_ref")
            if not ref:
                loose.append(item)
                continue
            mid, index, is_final = str(ref[0]), int(ref[1]), bool(ref[2])
            stored = (states.get(mid) or {}).get("events") or []
            if 0 <= index < len(stored) and stored[index].get("event_id") == item.get("event_id"):
                upto[mid] = max(upto.get(mid, -1), index)
                final[mid] = final.get(mid, False) or is_final
            else:
                loose.append(item)
        batch = list(loose)
        for mid, last in upto.items():
            for index, event in enumerate(states[mid]["events"][: last + 1]):
                if not event.get("reported_ts"):
                    batch.append({**report_item(mid, event), "_ref": [mid, index, final[mid]]})
        return batch

    def _post(self, url: str, headers: dict[str, str], secrets_in_use: Sequence[str],
              batch: Sequence[dict[str, Any]], tenant_id: str, deadline: float | None = None) -> bytes:
        public = [{k: v for k, v in item.items() if not k.startswith("_")} for item in batch]
        body = json.dumps({"delivery_report": public}, separators=(",", ":"), ensure_ascii=False).encode()
        sent_headers = {**headers, "Content-Type": "application/json", "User-Agent": "mail-proxy-reporter/1"}
        if secrets_in_use:
            sent_headers[HEADER] = signature_header(secrets_in_use, clock.now_ts(), body)
        try:
            answer = post(url, body, sent_headers, allow_loopback=self.allow_loopback, deadline=deadline)
        except OutboundRefused as exc:
            logger.warning("report URL refused", extra={"tenant_id": tenant_id, "reason": str(exc)})
            raise SyncRefused(f"report URL refused: {exc}") from exc
        except OutboundFailed as exc:
            raise SyncRefused(f"report call failed: {exc}") from exc
        if not 200 <= answer.status < 300:
            raise SyncRefused(f"application answered {answer.status}")
        return answer.body

    def _mark_reported(self, tenant_id: str, batch: Sequence[dict[str, Any]]) -> None:
        now = clock.now_ts()
        per_message: dict[str, list[tuple[int, str]]] = defaultdict(list)
        final: dict[str, bool] = {}
        for item in batch:
            if not item.get("_ref"):
                continue
            message_id, index, is_final = item["_ref"]
            per_message[message_id].append((int(index), str(item["event_id"])))
            final[message_id] = final.get(message_id, False) or bool(is_final)
        for message_id, events in per_message.items():
            expires = now + RETENTION_SECONDS if final[message_id] else None
            self.repo.mark_events_reported(tenant_id, message_id, events, now, expires)

    @staticmethod
    def _signing_secrets(tenant: Tenant) -> list[str]:
        return signing_secrets_in_use(tenant)  # the current secret and every retired one still in its grace


POST_ACK_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)


def _persist(write: Callable[[], object], *, what: str, required: bool = True) -> None:
    """A table write after the application acknowledged: tried again through throttling and transient errors;
    if it still fails, a ``required`` one fails the record, any other is logged (its state heals later)."""
    for delay in (*POST_ACK_RETRY_DELAYS, None):
        try:
            write()
            return
        except Exception as exc:
            if delay is None:
                if required:
                    raise
                logger.warning("report bookkeeping not written", extra={"what": what, "error": type(exc).__name__})
                return
            time.sleep(delay)


def _sync_answer(body: bytes, now: int) -> tuple[int, int | None]:
    """``queued`` and the quiet time asked by ``next_sync_after``, from the application's answer.

    Anything odd is ignored rather than failing an acknowledged batch: a body that is not JSON, a
    ``queued`` that is not a positive integer, a ``next_sync_after`` that is not a finite number (Python's
    parser accepts NaN and Infinity) or is already past. Quiet is at most ``MAX_QUIET_SECONDS``.
    """
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return 0, None
    if not isinstance(data, dict):
        return 0, None
    queued = data.get("queued")
    next_sync = data.get("next_sync_after")
    queued_n = queued if isinstance(queued, int) and not isinstance(queued, bool) and queued > 0 else 0
    if isinstance(next_sync, bool) or not isinstance(next_sync, int | float):
        return queued_n, None
    if isinstance(next_sync, float) and not math.isfinite(next_sync):
        return queued_n, None
    if next_sync <= now:
        return queued_n, None
    return queued_n, now + MAX_QUIET_SECONDS if next_sync > now + MAX_QUIET_SECONDS else int(next_sync)
