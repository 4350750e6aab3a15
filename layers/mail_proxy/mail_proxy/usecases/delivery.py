"""Delivery of queued messages: read, prepare, claim, send over SMTP, record the outcome at once.

Guarantees:
- never twice: a message is claimed (a conditional write with a lease) only right before its SMTP
  transaction, and the server's 250 is recorded for that message alone, in a small conditional write, before
  anything else happens; the outcome is bounded in size and falls back to a minimal write, and one that still
  cannot be written is kept and retried by the container (a claim whose lease runs out is never sent again:
  see ``message_lifecycle``);
- every write names the state it expects (status, lease owner, payload version), so a stale sender never
  overwrites a deleted, replaced or already recorded message;
- nothing lost, failures stay where they start: every message read for sending leaves with an explicit
  transition (sent, error with a reason, deferred with a due time, held, or handed back to the queue); an
  unexpected error in one message or account group retries those messages with backoff and never reaches
  the other groups of the record;
- temporary failures (4xx, network) are retried with backoff and jitter, sending the stored original each
  time; permanent ones (5xx, authentication, TLS, all recipients refused, malformed) fail at once. The
  retry-or-fail decision is made in ``delivery_outcomes`` and nowhere else;
- rate-limit slots reserved for messages that were not sent are given back (``rate_reservations``).

The steps of one account group, in order: its account, its content, the tenant's bounce settings and
suppression list, the account's rate windows, then each message in turn (render, connect, claim, send,
record), and at the end the unused slots given back and the sends counted. Messages are prepared by
``delivery_preparation``; this module sequences them and owns the claim.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from mail_proxy.adapters.observability import FailureClass, count_failures_by_class, id_list, logger, metrics
from mail_proxy.adapters.send_queue import new_event_id
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Account, Tenant
from mail_proxy.domain.message_lifecycle import STAGE_SMTP, MessageState
from mail_proxy.domain.models import MessageStatus
from mail_proxy.domain.reputation import SENT
from mail_proxy.errors import ThrottledError
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.mail.smtp_replies import SmtpDeliveryError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.usecases.attachments import AttachmentPermanentError, AttachmentTemporaryError
from mail_proxy.usecases.delivery_outcomes import OutcomeRecorder, PendingMessage, internal_reason
from mail_proxy.usecases.delivery_preparation import (
    DeliveryConfig,
    Outgoing,
    apply_bounce_settings,
    render,
    resolve_content,
    smtp_settings,
    too_many_recipients,
)
from mail_proxy.usecases.message_content import MessageContent
from mail_proxy.usecases.ports import ContentLoader, DeliveryStore, SendLanes, SmtpConnections
from mail_proxy.usecases.rate_reservations import give_back_slots, reserve_slots
from mail_proxy.usecases.reputation_guard import ReputationCounter
from mail_proxy.usecases.scheduling import settle_abandoned

__all__ = ["DeliveryConfig", "DeliveryReport", "Dispatcher", "io_deadline"]

STOP_MARGIN_MS = 15_000  # no new SMTP transaction with less than this left, so outcomes are always written
IO_MARGIN_MS = 5_000  # an SMTP exchange or attachment fetch ends this long before the function would
PEC_WATCH_SECONDS = 30 * 24 * 3600  # how long a PEC message's Message-ID still leads its receipts to it


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    handed_back: int = 0


@dataclass
class _GroupProgress:
    sent: int = 0  # accepted by the server so far: the slots used, and the reputation guard's denominator


def io_deadline(remaining_ms: Callable[[], int]) -> float:
    """When a call to a tenant's server must be over (``time.monotonic()``): ``IO_MARGIN_MS`` before the
    function's end, so a server that answers slowly costs its own message, never the outcomes of the batch."""
    return time.monotonic() + max(remaining_ms() - IO_MARGIN_MS, 0) / 1000


class Dispatcher:
    def __init__(self, repo: DeliveryStore, queue: SendLanes, connections: SmtpConnections,
                 config: DeliveryConfig, content: ContentLoader | None = None) -> None:
        self.repo = repo
        self.queue = queue
        self.connections = connections
        self.config = config
        self.content: ContentLoader = content or MessageContent.inline_only()
        self.outcomes = OutcomeRecorder(repo, config.retry)
        self.reputation = ReputationCounter(repo)
        self._tenants: dict[str, Tenant | None] = {}
        self._accounts: dict[tuple[str, str], Account | None] = {}

    @property
    def sleep(self) -> Callable[[float], None]:
        """How the sender waits between tries of a state write (tests replace it)."""
        return self.outcomes.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], None]) -> None:
        self.outcomes.sleep = value

    def new_invocation(self) -> None:
        """Forget the tenants and accounts read so far: each invocation sees the current configuration once,
        instead of once per record (a batch of ten records is usually one tenant and one account)."""
        self._tenants.clear()
        self._accounts.clear()
        self.outcomes.write_unrecorded()

    def _tenant(self, tenant_id: str) -> Tenant | None:
        if tenant_id not in self._tenants:
            self._tenants[tenant_id] = self.repo.get_tenant(tenant_id)
        return self._tenants[tenant_id]

    def _account(self, tenant_id: str, account_id: str) -> Account | None:
        if (tenant_id, account_id) not in self._accounts:
            self._accounts[(tenant_id, account_id)] = self.repo.get_account(tenant_id, account_id)
        return self._accounts[(tenant_id, account_id)]

    # ------------------------------------------------------------------------------------------ a record

    def deliver(self, tenant_id: str, message_ids: Sequence[str], *, priority: int = 2,
                remaining_ms: Callable[[], int] = lambda: 60_000) -> DeliveryReport:
        report = DeliveryReport()
        tenant = self._tenant(tenant_id)
        if tenant is None:
            logger.warning("tenant not found; its messages are skipped",
                           extra={"tenant_id": tenant_id, "message_ids": id_list(message_ids)})
            report.skipped += len(message_ids)
            return report
        items = self._sendable(tenant, message_ids, report)
        if not items:
            return report
        payloads = self.repo.get_payloads(tenant_id, [item.item for item in items])
        by_account: dict[str, list[PendingMessage]] = defaultdict(list)
        for item in items:
            item.stored_payload = payloads.get(item.message_id)
            by_account[item.state.account_id or ""].append(item)
        leftover: list[PendingMessage] = []
        for account_id, group in by_account.items():
            try:
                leftover += self._deliver_group(tenant, account_id, group, remaining_ms)
            except Exception as exc:  # a failure stays with its own group: the others go on
                logger.exception("account group failed; its messages are retried later",
                                 extra={"tenant_id": tenant_id, "account_id": account_id,
                                        "message_ids": id_list(i.message_id for i in group if not i.done)})
                self._retry_unfinished(tenant, group, internal_reason(exc))
        if leftover:
            self._hand_back(tenant, leftover, report)
        self._report(tenant, items, report)
        return report

    def _sendable(self, tenant: Tenant, message_ids: Sequence[str], report: DeliveryReport
                  ) -> list[PendingMessage]:
        """The messages of the record this sender may claim now; the others are counted, settled or held."""
        tenant_id = tenant.tenant_id
        items = self.repo.get_states(tenant_id, message_ids)
        now = clock.now_ts()
        sendable: list[PendingMessage] = []
        for mid in dict.fromkeys(message_ids):
            item = items.get(mid)
            if item is None:
                report.skipped += 1
                continue
            state = MessageState.from_item(item)
            if state.lease_expired(now):
                self._settle_abandoned(tenant, state, report)
            elif not state.claimable(now):
                report.skipped += 1  # sent, failed, claimed by a live sender, or not due yet
            elif not tenant.is_sending(state.batch_code):
                self.repo.apply_transition(tenant_id, mid, state.hold(), now=now)
                report.handed_back += 1
            else:
                sendable.append(PendingMessage(item, state))
        return sendable

    def _retry_unfinished(self, tenant: Tenant, group: list[PendingMessage], reason: str) -> None:
        for item in group:
            if not item.done:
                self.outcomes.guarded(item, self.outcomes.retry_or_fail, tenant, item, reason, None)

    def _hand_back(self, tenant: Tenant, leftover: list[PendingMessage], report: DeliveryReport) -> None:
        """Messages left for another invocation go back on their lane; any the queue refuses are made due at
        once for the scheduler (neither queued nor claimed)."""
        now = clock.now_ts()
        failed = set(self.queue.enqueue(tenant.tenant_id, [(i.state.priority, i.message_id) for i in leftover]))
        for item in leftover:
            if item.message_id in failed:
                transition = item.state.retry_later(
                    "handed back: time ran short and the queue was unavailable", until=now, now=now,
                    event_id=new_event_id(), owner=None, attempted=False)
                self.outcomes.guarded(item, self.outcomes.transition, tenant, item, transition)
        report.handed_back += len(leftover)

    # ------------------------------------------------------------------------------------------ an account group

    def _deliver_group(self, tenant: Tenant, account_id: str, group: list[PendingMessage],
                       remaining_ms: Callable[[], int]) -> list[PendingMessage]:
        """Send one account's messages over one connection; returns those left for another invocation."""
        tenant_id = tenant.tenant_id
        account = self._account_or_fail(tenant, account_id, group)
        if account is None:
            return []
        for item in group:
            self.outcomes.guarded(item, resolve_content, self.outcomes, self.content, tenant, item)
        group = apply_bounce_settings(self.outcomes, self.repo, tenant, [item for item in group if not item.done])
        sendable, slots = reserve_slots(self.repo, self.outcomes, tenant, account, group)
        progress = _GroupProgress()
        try:
            return self._send_in_turn(tenant, account, sendable, remaining_ms, progress)
        finally:
            give_back_slots(self.repo, tenant_id, account, slots, slots_used=progress.sent)
            self.reputation.record(tenant_id, account_id, SENT, progress.sent)  # the guard's denominator

    def _account_or_fail(self, tenant: Tenant, account_id: str, group: list[PendingMessage]
                         ) -> Account | None:
        account = self._account(tenant.tenant_id, account_id) if account_id else None
        if account is None:
            for item in group:
                self.outcomes.fail(tenant, item, f"account '{account_id}' does not exist (deleted after submission?)",
                                   failure_class=FailureClass.ACCOUNT_MISSING, attempted=False)
        return account

    def _send_in_turn(self, tenant: Tenant, account: Account, sendable: list[PendingMessage],
                      remaining_ms: Callable[[], int], progress: _GroupProgress) -> list[PendingMessage]:
        """Each message in turn while time is left; those not started are returned to be handed back."""
        if not sendable:
            return []
        settings = smtp_settings(tenant.tenant_id, account, self.config)
        for index, item in enumerate(sendable):
            if item.done:
                continue
            if remaining_ms() < STOP_MARGIN_MS:
                return [rest for rest in sendable[index:] if not rest.done]
            try:
                if self._send_one(tenant, account, settings, item, sendable[index + 1:], io_deadline(remaining_ms)):
                    progress.sent += 1
            except Exception as exc:  # one message's surprise is its own
                logger.exception("message failed unexpectedly; it is retried later",
                                 extra={"tenant_id": tenant.tenant_id, "message_id": item.message_id})
                if not item.done:
                    self.outcomes.guarded(item, self.outcomes.retry_or_fail, tenant, item, internal_reason(exc), None)
        return []

    # ------------------------------------------------------------------------------------------ one message

    def _send_one(self, tenant: Tenant, account: Account, settings: SmtpSettings,
                  item: PendingMessage, rest: Sequence[PendingMessage], deadline: float) -> bool:
        """Prepare, claim, send and record one message; True if the server accepted it."""
        outgoing = self._prepare(tenant, item, deadline)
        if outgoing is None:
            return False
        try:
            connection = self.connections.get(settings, deadline=deadline)
        except SmtpDeliveryError as exc:
            # the server cannot be reached or refuses us: the same answer applies to the rest of the group
            self.connections.discard(settings)
            for other in (item, *rest):
                if not other.done:
                    self.outcomes.guarded(other, self.outcomes.apply_failure, tenant, other, exc)
            return False
        if not self._claim(tenant.tenant_id, item, STAGE_SMTP):
            return False
        try:
            outcome = connection.send(outgoing.sender, outgoing.recipients, outgoing.data, deadline=deadline)
        except SmtpDeliveryError as exc:
            self.connections.discard(settings)
            self.outcomes.apply_failure(tenant, item, exc)
            return False
        self.outcomes.accepted(tenant, item, outcome)
        if account.is_pec:
            self._watch_pec(tenant.tenant_id, item, outgoing.data)
        return True

    def _prepare(self, tenant: Tenant, item: PendingMessage, deadline: float) -> Outgoing | None:
        """Attachments fetched, the message rendered and signed; None when it failed or was deferred."""
        assert item.payload is not None
        try:
            prepared = self.content.prepare(tenant, item.message_id, item.payload, deadline=deadline)
        except AttachmentPermanentError as exc:
            self.outcomes.fail(tenant, item, f"attachment {exc}", failure_class=FailureClass.ATTACHMENT)
            return None
        except AttachmentTemporaryError as exc:
            self.outcomes.retry_or_fail(tenant, item, f"attachment {exc}", None)
            return None
        item.warnings = prepared.warnings
        try:
            outgoing = render(tenant, item, prepared)
        except MalformedMessageError as exc:
            self.outcomes.fail(tenant, item, f"malformed message: {exc}", failure_class=FailureClass.MALFORMED)
            return None
        refusal = too_many_recipients(outgoing)
        if refusal is not None:
            self.outcomes.fail(tenant, item, refusal, failure_class=FailureClass.MALFORMED)
            return None
        return outgoing

    def _claim(self, tenant_id: str, item: PendingMessage, stage: str) -> bool:
        owner = uuid.uuid4().hex
        now = clock.now_ts()
        transition = item.state.claim(owner=owner, lease_until=now + self.config.lease_seconds, now=now, stage=stage)
        try:
            applied = self.repo.apply_transition(tenant_id, item.message_id, transition, now=now)
        except (ThrottledError, BotoCoreError, ClientError):
            if not self._holds_claim(tenant_id, item, owner):
                raise  # not claimed: the caller retries the message
            applied = True
        if not applied and not self._holds_claim(tenant_id, item, owner):
            item.done = True  # changed, replaced, deleted or taken by another sender since it was read
            return False
        item.owner = owner
        return True

    def _holds_claim(self, tenant_id: str, item: PendingMessage, owner: str) -> bool:
        """Whether a claim write whose answer was lost (or whose retry failed its condition on the claim the
        first try made) took effect: the stored lease owner says. Otherwise the message would sit claimed by
        nobody and end, unsent, as "outcome unknown"."""
        state = self.repo.get_states(tenant_id, [item.message_id]).get(item.message_id)
        return state is not None and state.get("lease_owner") == owner

    def _watch_pec(self, tenant_id: str, item: PendingMessage, data: bytes) -> None:
        """A message sent through a PEC account waits for its acceptance receipt (or ``pec_timeout``);
        its Message-ID is how receipts name it."""
        header = BytesHeaderParser().parsebytes(data).get("Message-ID")
        sent_ts = clock.now_ts()
        try:
            self.repo.watch_pec_message(tenant_id, item.message_id, sent_ts=sent_ts,
                                        message_id_header=str(header).strip() if header else None,
                                        expires_at=sent_ts + PEC_WATCH_SECONDS)
        except (ClientError, BotoCoreError, ThrottledError):
            logger.exception("PEC message not watched for its receipts",
                             extra={"tenant_id": tenant_id, "message_id": item.message_id})

    # ------------------------------------------------------------------------------------------ the record's end

    def _settle_abandoned(self, tenant: Tenant, state: MessageState, report: DeliveryReport) -> None:
        """A claim whose sender died: ended or handed back (``scheduling.settle_abandoned`` decides)."""
        status = settle_abandoned(self.repo, tenant, state, now=clock.now_ts())
        if status == MessageStatus.ERROR:
            report.failed += 1
            metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=1)
            count_failures_by_class({FailureClass.OUTCOME_UNKNOWN: 1})
        elif status == MessageStatus.PENDING:
            self.queue.enqueue(tenant.tenant_id, [(state.priority, state.message_id)])
            report.handed_back += 1
        else:
            report.skipped += 1

    def _report(self, tenant: Tenant, items: list[PendingMessage], report: DeliveryReport) -> None:
        tenant_id = tenant.tenant_id
        counts: dict[MessageStatus, int] = defaultdict(int)
        failures: dict[FailureClass, int] = defaultdict(int)
        delayed: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for item in items:
            if item.status is None:
                continue
            counts[item.status] += 1
            if item.status == MessageStatus.DEFERRED and item.requeue_delay is not None:
                delayed[item.requeue_delay].append((item.state.priority, item.message_id))
            outcome: dict[str, Any] = {"tenant_id": tenant_id, "message_id": item.message_id,
                                       "status": item.status.value, "priority": item.state.priority,
                                       "error": item.error}
            if item.status == MessageStatus.ERROR:
                failure = item.failure_class or FailureClass.OTHER
                failures[failure] += 1
                outcome["reason_class"] = failure.value
            elif item.status == MessageStatus.DEFERRED:
                outcome["retry_at"] = item.retry_at
            logger.info("message outcome", extra=outcome)
        for delay, entries in delayed.items():
            self.queue.enqueue(tenant_id, entries, delay_seconds=delay)
        report.sent += counts[MessageStatus.SENT]
        report.failed += counts[MessageStatus.ERROR]
        report.deferred += counts[MessageStatus.DEFERRED]
        report.skipped += sum(1 for item in items if item.done and item.status is None)
        if counts[MessageStatus.SENT]:
            metrics.add_metric(name="MessagesSent", unit=MetricUnit.Count, value=counts[MessageStatus.SENT])
        if counts[MessageStatus.DEFERRED]:
            metrics.add_metric(name="MessagesDeferred", unit=MetricUnit.Count, value=counts[MessageStatus.DEFERRED])
        if counts[MessageStatus.ERROR]:
            metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=counts[MessageStatus.ERROR])
            count_failures_by_class(failures)
