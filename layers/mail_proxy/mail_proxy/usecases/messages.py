"""Reading and managing a tenant's messages: list, show with history, delete, clean up, suspend, run now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.blob_store import BlobMissing, BlobStore, BlobTooLarge, BlobUnavailable
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.payload_store import PayloadStore, files_prefix, message_folder, stored_object_key
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.adapters.send_queue import SendQueue
from mail_proxy.domain import clock
from mail_proxy.domain.message_models import HistoryEvent, MessageRecord
from mail_proxy.domain.models import FINAL_STATUSES, WAITING_STATUSES, MessageStatus
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ConflictError, InvalidInputError, NotFoundError
from mail_proxy.usecases import audit
from mail_proxy.usecases.report_routing import sync_all_now, sync_now
from mail_proxy.usecases.scheduling import ScheduleOutcome, enqueue_due
from mail_proxy.usecases.submission import search_text
from mail_proxy.usecases.tenants import acting_tenant

MAX_LIST_LIMIT = 1000
MAX_DELETE_IDS = 1000
MAX_PAGES_PER_LISTING = 20
HELD_COUNT_SCAN = 10_000  # held messages read to count them
PENDING_COUNT_SCAN = 2000  # newest messages read to count waiting ones; older waiting ones are in the due index


SEARCH_READ_LIMIT = 2000  # state items a filtered GET /messages reads at most per call


@dataclass(frozen=True)
class MessageSearch:
    """The filters of ``GET /messages`` beyond status: recipient (an address, exact, any case), subject (a
    case-insensitive substring), ``batch_code`` (exact) and a creation-time range (epoch seconds, inclusive)."""

    recipient: str | None = None
    subject: str | None = None
    batch_code: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None

    def check(self) -> None:
        if self.since_ts is not None and self.until_ts is not None and self.since_ts > self.until_ts:
            raise InvalidInputError("since_ts must not be after until_ts")
        if self.recipient is not None and "@" not in self.recipient.strip("@"):
            raise InvalidInputError("recipient must be an e-mail address")

    @property
    def from_ms(self) -> int | None:
        return None if self.since_ts is None else self.since_ts * 1000

    @property
    def to_ms(self) -> int | None:
        return None if self.until_ts is None else self.until_ts * 1000 + 999

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.recipient, self.subject, self.batch_code, self.since_ts,
                                           self.until_ts))

    def matches(self, state: dict[str, Any]) -> bool:
        if self.batch_code is not None and state.get("batch_code") != self.batch_code:
            return False
        return self.subject is None or search_text(self.subject) in (state.get("search_subject") or "")


def message_record(state: dict[str, Any], payload: dict[str, Any] | None, *, with_history: bool) -> MessageRecord:
    history = None
    if with_history:
        history = [
            HistoryEvent(event_id=e["event_id"], event_type=e["type"], event_ts=e["ts"],
                         description=e.get("description"), metadata=e.get("metadata"),
                         reported_ts=e.get("reported_ts"))
            for e in state.get("events") or []
        ]
    return MessageRecord(
        id=state["id"], tenant_id=state["tenant_id"], account_id=state.get("account_id"),
        priority=state.get("priority", 2), batch_code=state.get("batch_code"), status=state["status"],
        deferred_ts=state.get("deferred_ts"), sent_ts=state.get("sent_ts"), error_ts=state.get("error_ts"),
        error=state.get("error"), attempts=state.get("attempts", 0), created_at=state.get("created_at"),
        updated_at=state.get("updated_at"), message=payload, history=history,
    )


def _check_batch_code(batch_code: str | None) -> None:
    """Absent means every batch; an empty code is a mistake, never "everything" (422)."""
    if batch_code is not None and not batch_code.strip():
        raise InvalidInputError("batch_code must not be empty (omit it to act on every batch)")


def _fully_reported(state: dict[str, Any]) -> bool:
    return all(e.get("reported_ts") for e in state.get("events") or [])


class MessageDesk:
    def __init__(self, repo: MailRepository, queue: SendQueue, reports: ReportQueue | None = None,
                 payloads: PayloadStore | None = None) -> None:
        self.repo = repo
        self.queue = queue
        self.reports = reports or ReportQueue(None, None)
        self.payloads = payloads or PayloadStore(BlobStore(None))

    def list_messages(self, principal: Principal, tenant_id: str | None, *, status: MessageStatus | None,
             active_only: bool, include_history: bool, limit: int, cursor: str | None,
             search: MessageSearch | None = None) -> tuple[list[MessageRecord], str | None]:
        """A page of the tenant's messages, oldest first, that match every filter given.

        Bounded per call, whatever the tenant's history: the date range reads only that range of the
        creation-time index, a recipient only that address's entries of the recipient index; status,
        ``batch_code`` and subject are checked on the state items read: with any of these filters, at most
        ``SEARCH_READ_LIMIT`` of them (or ``limit`` if larger) per call. A page may so hold fewer than
        ``limit`` matches while ``next_cursor`` says there is more to look through.
        """
        tid = acting_tenant(principal, self.repo, tenant_id)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        search = search or MessageSearch()
        search.check()
        selected: list[dict[str, Any]] = []
        next_cursor = cursor
        # without a search filter the listing reads as it always has (up to MAX_PAGES_PER_LISTING pages)
        budget = max(SEARCH_READ_LIMIT, limit) if search.active else None
        for _page in range(MAX_PAGES_PER_LISTING):
            page = limit - len(selected) if budget is None else min(limit - len(selected), budget)
            states, next_cursor = self._candidates(tid, search, page, next_cursor)
            budget = None if budget is None else budget - page
            selected.extend(
                s for s in states
                if (status is None or s["status"] == status)
                and (not active_only or s["status"] in WAITING_STATUSES)
                and search.matches(s)
            )
            if len(selected) >= limit or not next_cursor or (budget is not None and budget <= 0):
                break
        payloads = self.repo.get_payloads(tid, selected)
        records = [message_record(s, self._content(payloads.get(s["id"])), with_history=include_history)
                   for s in selected]
        return records, next_cursor

    def _candidates(self, tenant_id: str, search: MessageSearch, limit: int, cursor: str | None
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of states from the narrowest index the search allows."""
        if search.recipient is None:
            return self.repo.list_message_states(tenant_id, limit=limit, cursor=cursor,
                                                 created_from_ms=search.from_ms, created_to_ms=search.to_ms)
        found, next_cursor = self.repo.messages_to_recipient(
            tenant_id, search.recipient, limit=limit, cursor=cursor, created_from_ms=search.from_ms,
            created_to_ms=search.to_ms)
        states = self.repo.get_states(tenant_id, [mid for mid, _ in found])
        # an entry of a message since deleted, or replaced under its id (another creation time), is stale
        return [states[mid] for mid, created in found
                if mid in states and states[mid].get("created_ms") == created], next_cursor

    def get(self, principal: Principal, message_id: str, tenant_id: str | None) -> MessageRecord:
        tid = acting_tenant(principal, self.repo, tenant_id)
        found = self.repo.get_message(tid, message_id)
        if found is None:
            raise NotFoundError(f"message '{message_id}' not found")
        state, payload = found
        return message_record(state, self._content(payload), with_history=True)

    def _content(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        """The submitted fields; a record whose content is gone (expired, or its S3 object lost) still shows,
        without them."""
        try:
            return self.payloads.resolve(stored)
        except (BlobMissing, BlobUnavailable, BlobTooLarge):
            return None

    def delete(self, principal: Principal, tenant_id: str | None, ids: list[str]) -> dict[str, Any]:
        tid = acting_tenant(principal, self.repo, tenant_id)
        if len(ids) > MAX_DELETE_IDS:
            raise InvalidInputError(f"at most {MAX_DELETE_IDS} ids per call")
        existing = self.repo.get_states(tid, ids)
        present = [i for i in dict.fromkeys(ids) if i in existing]
        objects = self._object_keys(tid, [existing[i] for i in present])
        # a message a sender holds is not removed under it: it is named in ``in_flight`` (delete it again
        # once it is sent or failed), and keeps its objects
        removed, in_flight = self.repo.delete_messages_if(tid, present, final_only=False)
        self._discard_objects(tid, self._spare(tid, objects, [existing[i] for i in in_flight]))
        not_found = [i for i in dict.fromkeys(ids) if i not in existing]
        audit.record(self.repo, command="delete_messages", tenant_id=tid, payload={"ids": ids},
                     message=f"{len(removed)} messages deleted for tenant '{tid}'")
        return {"removed": len(removed), "not_found": not_found, "unauthorized": [], "in_flight": in_flight}

    def cleanup(self, principal: Principal, tenant_id: str | None, older_than_seconds: int) -> int:
        """Remove final messages older than the cutoff whose events were all reported.

        A tenant without a report URL has nobody to report to, so its final messages qualify at once.
        """
        tid = acting_tenant(principal, self.repo, tenant_id)
        tenant = self.repo.require_tenant(tid)
        reports_on = tenant.reports_enabled
        cutoff = clock.now_ts() - older_than_seconds
        doomed: list[dict[str, Any]] = []
        cursor = None
        while True:
            states, cursor = self.repo.list_message_states(tid, limit=500, cursor=cursor)
            for s in states:
                final_ts = s.get("sent_ts") or s.get("error_ts") or 0
                if (s["status"] in FINAL_STATUSES and final_ts <= cutoff
                        and (not reports_on or _fully_reported(s))):
                    doomed.append(s)
            if not cursor:
                break
        objects = self._object_keys(tid, doomed)
        removed, changed = self.repo.delete_messages_if(tid, [s["id"] for s in doomed], final_only=True)
        spared = [s for s in doomed if s["id"] in set(changed)]  # replaced meanwhile: still in use
        self._discard_objects(tid, self._spare(tid, objects, spared))
        audit.record(self.repo, command="cleanup_messages", tenant_id=tid,
                     payload={"older_than_seconds": older_than_seconds},
                     message=f"cleanup removed {len(removed)} messages for tenant '{tid}'")
        return len(removed)

    def _object_keys(self, tenant_id: str, states: list[dict[str, Any]]) -> list[str]:
        """The S3 objects of these messages: payloads stored in S3 and large files turned into links.

        A message being sent keeps its objects (the sender is reading them). Files are found under the
        message's folder with one listing of the tenant's files, however many messages go.
        """
        if not self.payloads.blobs.configured:
            return []
        states = [s for s in states if s.get("status") != MessageStatus.SENDING]
        if not states:
            return []
        keys = [k for k in (stored_object_key(p) for p in self.repo.get_payloads(tenant_id, states).values()) if k]
        folders = {message_folder(s["id"]) for s in states}
        prefix = files_prefix(tenant_id)
        try:
            files = self.payloads.blobs.list_keys(prefix)
        except BlobUnavailable as exc:
            logger.error("large files of deleted messages could not be listed; the bucket lifecycle expires them",
                         extra={"tenant_id": tenant_id, "error": str(exc)})
            files = []
        keys.extend(k for k in files if k.removeprefix(prefix).split("/", 1)[0] in folders)
        return keys

    def _spare(self, tenant_id: str, keys: list[str], kept: list[dict[str, Any]]) -> list[str]:
        """``keys`` without the objects of messages that were not deleted after all."""
        if not kept or not keys:
            return keys
        keep = set(self._object_keys(tenant_id, [{**s, "status": MessageStatus.PENDING} for s in kept]))
        return [k for k in keys if k not in keep]

    def _discard_objects(self, tenant_id: str, keys: list[str]) -> None:
        """After the items are gone; an object left behind is logged and expires by the bucket's lifecycle."""
        try:
            self.payloads.blobs.delete(keys)
        except BlobUnavailable as exc:
            logger.error("objects of deleted messages were not deleted; the bucket lifecycle expires them",
                         extra={"tenant_id": tenant_id, "objects": len(keys), "error": str(exc)})

    def suspend(self, principal: Principal, tenant_id: str | None, batch_code: str | None) -> dict[str, Any]:
        _check_batch_code(batch_code)
        tid = acting_tenant(principal, self.repo, tenant_id)
        batches = self.repo.change_suspended_batches(tid, add=batch_code or "*")
        audit.record(self.repo, command="suspend", tenant_id=tid, payload={"batch_code": batch_code},
                     message=f"Tenant '{tid}' suspended {batch_code or 'all batches'}")
        return self._batch_state(tid, batches, batch_code)

    def activate(self, principal: Principal, tenant_id: str | None, batch_code: str | None) -> dict[str, Any]:
        _check_batch_code(batch_code)
        tid = acting_tenant(principal, self.repo, tenant_id)
        tenant = self.repo.require_tenant(tid)
        current = tenant.suspended_batch_codes
        if batch_code is None:
            batches = self.repo.change_suspended_batches(tid, clear=True)
        elif "*" in current:
            raise ConflictError("every batch is suspended; activate all batches (no batch_code) first")
        else:
            batches = self.repo.change_suspended_batches(tid, remove=batch_code)
        audit.record(self.repo, command="activate", tenant_id=tid, payload={"batch_code": batch_code},
                     message=f"Tenant '{tid}' activated {batch_code or 'all batches'}")
        enqueue_due(self.repo, self.queue, self.repo.require_tenant(tid))
        return self._batch_state(tid, batches, batch_code)

    def run_now(self, principal: Principal, tenant_id: str | None) -> ScheduleOutcome:
        tid = principal.tenant_scope(tenant_id, admin_may_omit=True)
        tenants = [self.repo.require_tenant(tid)] if tid else self.repo.list_tenants()
        total = ScheduleOutcome()
        for tenant in tenants:
            outcome = enqueue_due(self.repo, self.queue, tenant)
            total.queued += outcome.queued
            total.skipped_suspended += outcome.skipped_suspended
        if self.reports.configured and tid:
            sync_now(self.repo, self.reports, tid)
        elif self.reports.configured:  # the admin without a tenant: every tenant's parked reports, in one pass
            sync_all_now(self.repo, self.reports, tenants)
        audit.record(self.repo, command="run_now", tenant_id=tid, payload={},
                     message=f"run-now queued {total.queued} messages", queued=total.queued)
        return total

    def pending_count(self, principal: Principal, tenant_id: str | None, batch_code: str | None) -> int:
        """Messages of the tenant (of the batch) still waiting to be sent."""
        tid = acting_tenant(principal, self.repo, tenant_id)
        return int(self._batch_state(tid, [], batch_code)["pending_messages"])

    def _batch_state(self, tenant_id: str, batches: list[str], batch_code: str | None) -> dict[str, Any]:
        """Counts the waiting messages (of the batch): the due index holds the deferred and held ones, and
        the newest messages are read for those queued at submission (which carry no due time)."""
        recent, _truncated = self.repo.recent_states(tenant_id, limit=PENDING_COUNT_SCAN)
        waiting = {s["id"] for s in recent if s["status"] in WAITING_STATUSES
                   and (batch_code is None or s.get("batch_code") == batch_code)}
        indexed = [mid for _, mid in self.repo.waiting_message_keys(tenant_id)]
        indexed += self.repo.held_message_ids(tenant_id, limit=HELD_COUNT_SCAN)
        due_ids = [mid for mid in dict.fromkeys(indexed) if mid not in waiting]
        if due_ids:
            states = self.repo.get_states(tenant_id, due_ids)
            waiting.update(m for m, s in states.items() if s["status"] in WAITING_STATUSES
                           and (batch_code is None or s.get("batch_code") == batch_code))
        return {"tenant_id": tenant_id, "batch_code": batch_code, "suspended_batches": sorted(batches),
                "pending_messages": len(waiting)}
