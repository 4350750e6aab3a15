"""``add-messages``: validate each message on its own, store it, queue the ones that are due.

Rules (docs/design.md): an invalid message is rejected with a reason while the others are queued; a rejected
message that has a usable id is stored as ``error`` (and so reported); a message still waiting is
replaced; one already sent is rejected with "already sent"; at most 1,000 per call.

A resubmission identical to the message already accepted under that id (same ``content_hash``, stored on
the state) is answered as queued whatever the stored message's state, and changes nothing when that message
is being sent or was sent: a client retrying a call whose answer it did not get (a timeout, a 500, an
``Idempotency-Key`` retry) is told what the first call should have told it, never "already sent".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import id_list, logger, metrics, tracer
from mail_proxy.adapters.payload_store import PayloadStore
from mail_proxy.adapters.send_queue import SendQueue, new_event_id
from mail_proxy.domain import clock
from mail_proxy.domain.message_models import MessageIn, describe_validation_error
from mail_proxy.domain.models import (
    MAX_MESSAGES_PER_CALL,
    MESSAGE_ID_PATTERN,
    RETENTION_SECONDS,
    MessageStatus,
    normalise_priority,
)
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ForbiddenError, InvalidInputError
from mail_proxy.mail.mime_addresses import envelope_recipients
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.usecases import audit

_ID = re.compile(MESSAGE_ID_PATTERN)


@dataclass
class SubmissionResult:
    queued: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, message_id: Any, reason: str) -> None:
        self.rejected.append({"id": message_id if isinstance(message_id, str) else None, "reason": reason})


class MessageSubmission:
    def __init__(self, repo: MailRepository, queue: SendQueue, payloads: PayloadStore | None = None) -> None:
        self.repo = repo
        self.queue = queue
        self.payloads = payloads or PayloadStore(BlobStore(None))

    @tracer.capture_method(capture_response=False)
    def add_messages(self, principal: Principal, messages: list[Any], default_priority: Any,
                     tenant_id: str | None = None) -> SubmissionResult:
        principal.require_authenticated()
        if len(messages) > MAX_MESSAGES_PER_CALL:
            raise InvalidInputError(
                f"too many messages: {len(messages)} in one call, at most {MAX_MESSAGES_PER_CALL}")
        try:
            default = normalise_priority(default_priority)
        except ValueError as exc:
            raise InvalidInputError(f"default_priority: {exc}") from exc
        scope = principal.tenant_scope(tenant_id, admin_may_omit=True)
        if scope and principal.is_admin:
            self.repo.require_tenant(scope)

        result = SubmissionResult()
        by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
        foreign = [m.get("id") for m in messages if isinstance(m, dict) and not principal.is_admin
                   and m.get("tenant_id") not in (None, principal.tenant_id)]
        if foreign:
            raise ForbiddenError(f"Token not authorized for the tenant of messages {foreign[:20]}")
        for raw in messages:
            if not isinstance(raw, dict):
                result.reject(None, "each message must be a JSON object")
                continue
            owner = raw.get("tenant_id") or scope
            if not owner:
                result.reject(raw.get("id"), "tenant_id is required with the admin token")
            elif scope and owner != scope:
                result.reject(raw.get("id"), f"tenant_id '{owner}' does not match the request's tenant_id")
            elif not isinstance(owner, str):
                result.reject(raw.get("id"), "tenant_id must be a string")
            else:
                by_tenant[owner].append(raw)

        for owner, raws in by_tenant.items():
            queued_before, rejected_before = result.queued, len(result.rejected)
            self._add_for_tenant(owner, raws, default, result)
            # ids only (what a message's life is searched by): never bodies, never rejection reasons that
            # might quote submitted values
            submitted = (r["id"] for r in raws if isinstance(r.get("id"), str) and _ID.fullmatch(r["id"]))
            logger.info("messages submitted", extra={
                "tenant_id": owner, "queued": result.queued - queued_before, "message_ids": id_list(submitted),
                "rejected_ids": id_list(r["id"] for r in result.rejected[rejected_before:]
                                        if r["id"] and _ID.fullmatch(r["id"]))})
        if result.queued:
            metrics.add_metric(name="MessagesAccepted", unit=MetricUnit.Count, value=result.queued)
        if result.rejected:
            metrics.add_metric(name="MessagesRejected", unit=MetricUnit.Count, value=len(result.rejected))
        audit.record(self.repo, command="add_messages", tenant_id=scope,
                     payload={"messages": messages, "default_priority": default_priority},
                     message=f"add-messages: {result.queued} queued, {len(result.rejected)} rejected",
                     queued=result.queued, rejected=len(result.rejected))
        return result

    def _add_for_tenant(self, tenant_id: str, raws: list[dict[str, Any]], default_priority: int,
                        result: SubmissionResult) -> None:
        tenant = self.repo.get_tenant(tenant_id)
        if tenant is None:
            for raw in raws:
                result.reject(raw.get("id"), f"tenant '{tenant_id}' not found")
            return
        accounts = {a.id for a in self.repo.list_accounts(tenant_id)}
        ids = [r["id"] for r in raws if isinstance(r.get("id"), str) and _ID.fullmatch(r["id"])]
        existing = self.repo.get_states(tenant_id, ids)
        now = clock.now_ts()
        now_ms = int(clock.now() * 1000)
        seen: set[str] = set()
        entries: list[tuple[dict[str, Any], dict[str, Any], str | None]] = []
        accepted: list[tuple[dict[str, Any], bool]] = []  # (state, counts as queued)
        recipients: dict[str, list[str]] = {}  # what the recipient index gets, by message id

        for seq, raw in enumerate(raws):
            raw_id = raw.get("id")
            usable_id = isinstance(raw_id, str) and bool(_ID.fullmatch(raw_id))
            if not isinstance(raw_id, str) or not usable_id:
                raw_id = raw_id if isinstance(raw_id, str) else None
            if usable_id and raw_id in seen:
                result.reject(raw_id, "duplicate id in this call")
                continue
            if usable_id and raw_id is not None:
                seen.add(raw_id)
            old = existing.get(raw_id) if usable_id and raw_id is not None else None
            if old is not None and old["status"] in _NOT_REPLACEABLE and self._same_as_accepted(
                    raw, old, tenant_id, accounts, default_priority):
                result.queued += 1  # a retry of the accepted message: answered as the first call, nothing written
                continue
            if old is not None and old["status"] in (MessageStatus.SENT, MessageStatus.BOUNCED):
                result.reject(raw_id, "already sent")
                continue
            if old is not None and old["status"] == MessageStatus.SENDING:
                result.reject(raw_id, "message is being sent")
                continue
            reason, message = self._validate(raw, tenant_id, accounts)
            if reason is None and message is not None:
                payload = payload_fields = message.payload()
                limit = self.payloads.limit()
                if len(json.dumps(payload, ensure_ascii=False).encode()) > limit:
                    reason = f"message too large: at most {limit // 1024} KB of fields, bodies and inline attachments"
                else:
                    payload = self.payloads.prepare(tenant_id, message.id, payload)
            if reason is not None or message is None:
                result.reject(raw_id, reason or "invalid message")
                if usable_id:
                    state = self._error_state(raw, reason or "invalid message", now, now_ms + seq)
                    if not tenant.reports_enabled:
                        state["expires_at"] = now + RETENTION_SECONDS  # nobody to report it to
                    entries.append((state, _safe_payload(raw), old.get("payload_version") if old else None))
                    accepted.append((state, False))
                continue
            priority = message.priority if isinstance(message.priority, int) else default_priority
            deferred = message.deferred_ts is not None and message.deferred_ts > now
            state = {
                "id": message.id,
                "account_id": message.account_id,
                "priority": priority,
                "batch_code": message.batch_code,
                "status": MessageStatus.DEFERRED if deferred else MessageStatus.PENDING,
                "deferred_ts": message.deferred_ts if deferred else None,
                "attempts": 0,
                "events": [],
                "created_at": clock.now_iso(),
                "updated_at": clock.now_iso(),
                "created_ms": now_ms + seq,
                # queued now: SQS carries it (the scheduler's reconciliation covers a lost enqueue); deferred
                # or held: the due index tells the scheduler when to look again
                "due_ts": message.deferred_ts if deferred else None,
                "content_hash": content_hash(message, priority),
                "search_subject": search_text(message.subject),
            }
            if not tenant.is_sending(message.batch_code):
                state["held"] = True  # waits among the held messages until the tenant or batch sends again
            entries.append((state, payload, old.get("payload_version") if old else None))
            accepted.append((state, True))
            recipients[message.id] = _recipients(payload_fields)

        stored = self.repo.put_messages(tenant_id, entries)
        # a message claimed or sent between the read above and the write: what it is now decides the answer
        raced = [state["id"] for (state, counts), ok in zip(accepted, stored, strict=True) if counts and not ok]
        now_stored = self.repo.get_states(tenant_id, raced) if raced else {}
        to_queue: list[tuple[int, str]] = []
        for (state, counts), ok in zip(accepted, stored, strict=True):
            if not ok:
                if counts:
                    current = now_stored.get(state["id"])
                    if current is not None and current.get("content_hash") == state["content_hash"]:
                        result.queued += 1  # the same message, already accepted and now being sent
                    elif current is not None and current["status"] == MessageStatus.SENDING:
                        result.reject(state["id"], "message is being sent")
                    else:
                        result.reject(state["id"], "already sent")
                continue
            if counts:
                result.queued += 1
                if state["status"] == MessageStatus.PENDING and tenant.is_sending(state["batch_code"]):
                    to_queue.append((state["priority"], state["id"]))
        to_queue.sort()
        for mid in self.queue.enqueue(tenant_id, to_queue):
            self.repo.set_due(tenant_id, mid, now)  # not queued: the scheduler queues it on its next tick
        self._index_recipients(tenant_id, [state for (state, counts), ok in zip(accepted, stored, strict=True)
                                           if counts and ok], recipients)

    def _index_recipients(self, tenant_id: str, states: list[dict[str, Any]], recipients: dict[str, list[str]]
                          ) -> None:
        """Last, once the messages are stored and queued: an index write that fails costs only the search
        by recipient for these messages (logged and counted), never their delivery or the answer."""
        entries = [(s["id"], s["created_ms"], recipients.get(s["id"], [])) for s in states]
        try:
            self.repo.index_recipients(tenant_id, entries)
        except Exception as exc:
            logger.error("recipient index not written; these messages are not found by recipient",
                         extra={"tenant_id": tenant_id, "message_ids": id_list(s["id"] for s in states),
                                "error": type(exc).__name__})
            metrics.add_metric(name="RecipientIndexFailed", unit=MetricUnit.Count, value=len(states))

    def _same_as_accepted(self, raw: dict[str, Any], old: dict[str, Any], tenant_id: str, accounts: set[str],
                          default_priority: int) -> bool:
        """Whether ``raw`` is, once validated, the very message stored as ``old`` (same content hash)."""
        if not old.get("content_hash"):
            return False
        reason, message = self._validate(raw, tenant_id, accounts)
        if reason is not None or message is None:
            return False
        priority = message.priority if isinstance(message.priority, int) else default_priority
        return bool(old["content_hash"] == content_hash(message, priority))

    @staticmethod
    def _validate(raw: dict[str, Any], tenant_id: str, accounts: set[str]) -> tuple[str | None, MessageIn | None]:
        try:
            message = MessageIn.model_validate(raw)
        except ValidationError as exc:
            return describe_validation_error(exc), None
        if message.account_id not in accounts:
            return f"account '{message.account_id}' not found for tenant '{tenant_id}'", None
        return None, message

    @staticmethod
    def _error_state(raw: dict[str, Any], reason: str, now: int, created_ms: int) -> dict[str, Any]:
        account = raw.get("account_id")
        return {
            "id": raw["id"],
            "account_id": account if isinstance(account, str) and len(account) <= 128 else None,
            "priority": 2,
            "batch_code": raw.get("batch_code") if isinstance(raw.get("batch_code"), str) else None,
            "status": MessageStatus.ERROR,
            "error": f"rejected: {reason}",
            "error_ts": now,
            "attempts": 0,
            "events": [{"event_id": new_event_id(), "type": "error", "ts": now,
                        "description": f"rejected: {reason}"}],
            "created_at": clock.now_iso(),
            "updated_at": clock.now_iso(),
            "created_ms": created_ms,
        }


_NOT_REPLACEABLE = (MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.BOUNCED)


def content_hash(message: MessageIn, priority: int) -> str:
    """What a message is, independent of key order and spacing: a hash of its validated fields and priority."""
    canonical = json.dumps({"message": message.payload(), "priority": priority}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


SEARCH_SUBJECT_CHARS = 200  # of a subject kept on the state item for GET /messages?subject=


def search_text(text: str) -> str:
    """The form a subject is searched in: case-folded, whitespace runs as one space, the first 200 characters."""
    return " ".join(text.casefold().split())[:SEARCH_SUBJECT_CHARS]


def _recipients(payload: dict[str, Any]) -> list[str]:
    try:
        return envelope_recipients(payload)
    except MalformedMessageError:
        return []


def _safe_payload(raw: dict[str, Any]) -> dict[str, Any]:
    """What a rejected message looked like, bounded in size so the error item always fits."""
    text = json.dumps(raw, ensure_ascii=False, default=str)
    if len(text.encode()) <= 64 * 1024:
        return json.loads(text)
    return {"id": raw.get("id"), "truncated": True}
