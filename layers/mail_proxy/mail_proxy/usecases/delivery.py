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
  retry-or-fail decision is made in ``_apply_failure`` and ``_retry_or_fail`` and nowhere else;
- rate-limit slots reserved for messages that were not sent are given back.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from mail_proxy.adapters.blob_store import BlobMissing
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb import keys as dynamo_keys
from mail_proxy.adapters.observability import FailureClass, count_failures_by_class, id_list, logger, metrics
from mail_proxy.adapters.secrets_config import decrypt, key_ring
from mail_proxy.adapters.send_queue import SendQueue, new_event_id
from mail_proxy.domain import clock
from mail_proxy.domain import message_lifecycle as life
from mail_proxy.domain.entities import Account, Tenant
from mail_proxy.domain.models import MAX_RECIPIENTS, RETENTION_SECONDS, MessageStatus
from mail_proxy.domain.rate_limits import RetryPolicy, Window, account_windows
from mail_proxy.domain.reputation import SENT
from mail_proxy.errors import ThrottledError
from mail_proxy.mail.mime import (
    MalformedMessageError,
    build_email,
    envelope_recipients,
    envelope_sender,
    message_bytes,
    parse_mailboxes,
)
from mail_proxy.mail.smtp_client import (
    ConnectionCache,
    SendOutcome,
    SmtpDeliveryError,
    SmtpPermanentError,
    SmtpSettings,
)
from mail_proxy.security.address_guard import AddressPolicy
from mail_proxy.security.proxy_tags import make_tag
from mail_proxy.usecases.accounts import password_context
from mail_proxy.usecases.attachments import AttachmentPermanentError, AttachmentTemporaryError
from mail_proxy.usecases.dkim_keys import sign_for_tenant
from mail_proxy.usecases.message_content import MessageContent, PreparedContent
from mail_proxy.usecases.reputation_guard import ReputationGuard
from mail_proxy.usecases.scheduling import settle_abandoned
from mail_proxy.usecases.suppressions import suppression_applies

LEASE_SECONDS = 180  # longer than the sender's 60 s timeout: a live sender never loses its claim
STOP_MARGIN_MS = 15_000  # no new SMTP transaction with less than this left, so outcomes are always written
IO_MARGIN_MS = 5_000  # an SMTP exchange or attachment fetch ends this long before the function would
MAX_SQS_DELAY = 900
PEC_WATCH_SECONDS = 30 * 24 * 3600  # how long a PEC message's Message-ID still leads its receipts to it
WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)  # an outcome write that failed is tried again this often
CONTENT_MARGIN_SECONDS = 86400  # a deferral this close to the content's expiry extends it
UNRECORDED_KEPT = 1000  # accepted messages whose outcome could not be written, kept to write later


@dataclass(frozen=True)
class DeliveryConfig:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    smtp_timeout: float = 20.0
    verify_tls: bool = True
    ca_file: str | None = None
    lease_seconds: int = LEASE_SECONDS
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)  # where account hosts may resolve to


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    handed_back: int = 0


@dataclass
class _Pending:
    """A message read for sending, and what became of it."""

    state: dict[str, Any]
    seen: life.Seen
    stored_payload: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    owner: str | None = None  # the lease owner once claimed
    done: bool = False  # left the sender's hands: a transition was applied, or someone else owns it
    status: MessageStatus | None = None  # what this sender made of it
    error: str | None = None
    retry_at: int | None = None
    requeue_delay: int | None = None
    warnings: list[str] = field(default_factory=list)
    failure_class: FailureClass | None = None
    suppressed: list[str] = field(default_factory=list)
    recipients: list[str] | None = None

    @property
    def message_id(self) -> str:
        return self.seen.message_id


@dataclass
class _Unrecorded:
    """An acceptance whose write failed: retried at the next invocation of this container."""

    tenant_id: str
    transition: life.Transition
    message_id: str


def io_deadline(remaining_ms: Callable[[], int]) -> float:
    """When a call to a tenant's server must be over (``time.monotonic()``): ``IO_MARGIN_MS`` before the
    function's end, so a server that answers slowly costs its own message, never the outcomes of the batch."""
    return time.monotonic() + max(remaining_ms() - IO_MARGIN_MS, 0) / 1000


class Dispatcher:
    def __init__(self, repo: MailRepository, queue: SendQueue, connections: ConnectionCache,
                 config: DeliveryConfig, content: MessageContent | None = None) -> None:
        self.repo = repo
        self.queue = queue
        self.connections = connections
        self.config = config
        self.content = content or MessageContent.inline_only()
        self._tenants: dict[str, Tenant | None] = {}
        self._accounts: dict[tuple[str, str], Account | None] = {}
        self._unrecorded: list[_Unrecorded] = []
        self.reputation = ReputationGuard(repo)
        self.sleep: Callable[[float], None] = time.sleep

    def new_invocation(self) -> None:
        """Forget the tenants and accounts read so far: each invocation sees the current configuration once,
        instead of once per record (a batch of ten records is usually one tenant and one account)."""
        self._tenants.clear()
        self._accounts.clear()
        self._write_unrecorded()

    def _tenant(self, tenant_id: str) -> Tenant | None:
        if tenant_id not in self._tenants:
            self._tenants[tenant_id] = self.repo.get_tenant(tenant_id)
        return self._tenants[tenant_id]

    def _account(self, tenant_id: str, account_id: str) -> Account | None:
        if (tenant_id, account_id) not in self._accounts:
            self._accounts[(tenant_id, account_id)] = self.repo.get_account(tenant_id, account_id)
        return self._accounts[(tenant_id, account_id)]

    def deliver(self, tenant_id: str, message_ids: Sequence[str], *, priority: int = 2,
                remaining_ms: Callable[[], int] = lambda: 60_000) -> DeliveryReport:
        report = DeliveryReport()
        tenant = self._tenant(tenant_id)
        if tenant is None:
            logger.warning("tenant not found; its messages are skipped",
                           extra={"tenant_id": tenant_id, "message_ids": id_list(message_ids)})
            report.skipped += len(message_ids)
            return report
        states = self.repo.get_states(tenant_id, message_ids)
        now = clock.now_ts()
        items: list[_Pending] = []
        for mid in dict.fromkeys(message_ids):
            state = states.get(mid)
            if state is None:
                report.skipped += 1
                continue
            seen = life.Seen.of(state)
            if seen.lease_expired(now):
                self._settle_abandoned(tenant, seen, report)
            elif not seen.claimable(now):
                report.skipped += 1  # sent, failed, claimed by a live sender, or not due yet
            elif not tenant.is_sending(seen.batch_code):
                self.repo.apply_transition(tenant_id, mid, life.hold(seen), now=now)
                report.handed_back += 1
            else:
                items.append(_Pending(state, seen))
        if not items:
            return report

        payloads = self.repo.get_payloads(tenant_id, [item.state for item in items])
        by_account: dict[str, list[_Pending]] = defaultdict(list)
        for item in items:
            item.stored_payload = payloads.get(item.message_id)
            by_account[item.seen.account_id or ""].append(item)
        leftover: list[_Pending] = []
        for account_id, group in by_account.items():
            try:
                leftover += self._deliver_group(tenant, account_id, group, remaining_ms)
            except Exception as exc:  # a failure stays with its own group: the others go on
                logger.exception("account group failed; its messages are retried later",
                                 extra={"tenant_id": tenant_id, "account_id": account_id,
                                        "message_ids": id_list(i.message_id for i in group if not i.done)})
                reason = _internal(exc)
                for item in group:
                    if not item.done:
                        self._guarded(item, self._retry_or_fail, tenant, item, reason, None)
        if leftover:
            failed = set(self.queue.enqueue(tenant_id, [(item.seen.priority, item.message_id) for item in leftover]))
            for item in leftover:
                if item.message_id in failed:  # neither queued nor claimed: the scheduler looks again at once
                    self._guarded(item, self._transition, tenant, item, life.retry_later(
                        item.seen, "handed back: time ran short and the queue was unavailable", until=now, now=now,
                        event_id=new_event_id(), owner=None, attempted=False))
            report.handed_back += len(leftover)
        self._report(tenant, items, report)
        return report

    # ------------------------------------------------------------------------------------------ sending

    def _deliver_group(self, tenant: Tenant, account_id: str, group: list[_Pending],
                       remaining_ms: Callable[[], int]) -> list[_Pending]:
        """Send one account's messages over one connection; returns those left for another invocation."""
        tenant_id = tenant.tenant_id
        account = self._account(tenant_id, account_id) if account_id else None
        if account is None:
            for item in group:
                self._fail(tenant, item, f"account '{account_id}' does not exist (deleted after submission?)",
                           failure_class=FailureClass.ACCOUNT_MISSING, attempted=False)
            return []
        for item in group:
            self._guarded(item, self._resolve_content, tenant, item)
        group = self._apply_bounce_settings(tenant, [item for item in group if not item.done])
        sendable, slots = self._apply_rate_limits(tenant, account, group)
        sent = 0
        try:
            settings = self._smtp_settings(tenant_id, account) if sendable else None
            for index, item in enumerate(sendable):
                if item.done:
                    continue
                if remaining_ms() < STOP_MARGIN_MS:
                    return [rest for rest in sendable[index:] if not rest.done]
                assert settings is not None
                try:
                    if self._send_one(tenant, account, settings, item, sendable[index + 1:],
                                      io_deadline(remaining_ms)):
                        sent += 1
                except Exception as exc:  # one message's surprise is its own
                    logger.exception("message failed unexpectedly; it is retried later",
                                     extra={"tenant_id": tenant_id, "message_id": item.message_id})
                    if not item.done:
                        self._guarded(item, self._retry_or_fail, tenant, item, _internal(exc), None)
        finally:
            self._give_back_slots(tenant_id, account, slots, slots_used=sent)
            self.reputation.record(tenant_id, account_id, SENT, sent)  # the guard's denominator
        return []

    def _resolve_content(self, tenant: Tenant, item: _Pending) -> None:
        """The stored payload, wherever it lives; missing content fails this message alone."""
        if item.stored_payload is None:
            self._fail(tenant, item, "stored message content is missing", failure_class=FailureClass.CONTENT_MISSING,
                       attempted=False)
            return
        try:
            item.payload = self.content.resolve(item.stored_payload)
        except BlobMissing:
            self._fail(tenant, item, "stored message content is missing", failure_class=FailureClass.CONTENT_MISSING,
                       attempted=False)
        except Exception as exc:  # S3 unavailable or throttled: it may work later
            logger.warning("stored message content unavailable; retried later",
                           extra={"tenant_id": tenant.tenant_id, "message_id": item.message_id,
                                  "error": type(exc).__name__})
            self._retry_or_fail(tenant, item, "stored message content is unavailable", None)

    def _send_one(self, tenant: Tenant, account: Account, settings: SmtpSettings, item: _Pending,
                  rest: Sequence[_Pending], deadline: float) -> bool:
        """Prepare, claim, send and record one message; True if the server accepted it."""
        tenant_id = tenant.tenant_id
        assert item.payload is not None
        try:
            prepared = self.content.prepare(tenant, item.message_id, item.payload, deadline=deadline)
        except AttachmentPermanentError as exc:
            self._fail(tenant, item, f"attachment {exc}", failure_class=FailureClass.ATTACHMENT)
            return False
        except AttachmentTemporaryError as exc:
            self._retry_or_fail(tenant, item, f"attachment {exc}", None)
            return False
        item.warnings = prepared.warnings
        try:
            data, sender, recipients = self._render(tenant_id, item, prepared)
            # signed last, as the bytes go to the server: the tenant's key for the From domain, if it has one
            data = sign_for_tenant(tenant, parse_mailboxes(prepared.payload.get("from"), field="from")[0].domain,
                                   data)
        except MalformedMessageError as exc:
            self._fail(tenant, item, f"malformed message: {exc}", failure_class=FailureClass.MALFORMED)
            return False
        if item.suppressed:
            recipients = [r for r in recipients if r.lower() not in item.suppressed]
        if len(recipients) > MAX_RECIPIENTS:
            self._fail(tenant, item, f"too many recipients: {len(recipients)}, at most {MAX_RECIPIENTS}",
                       failure_class=FailureClass.MALFORMED)
            return False
        try:
            connection = self.connections.get(settings, deadline=deadline)
        except SmtpDeliveryError as exc:
            # the server cannot be reached or refuses us: the same answer applies to the rest of the group
            self.connections.discard(settings)
            refusal = exc
            for other in (item, *rest):
                if not other.done:
                    self._guarded(other, self._apply_failure, tenant, other, refusal)
            return False
        if not self._claim(tenant_id, item, life.STAGE_SMTP):
            return False
        try:
            outcome = connection.send(sender, recipients, data, deadline=deadline)
        except SmtpDeliveryError as exc:
            self.connections.discard(settings)
            self._apply_failure(tenant, item, exc)
            return False
        self._accepted(tenant, item, outcome)
        if account.is_pec:
            self._watch_pec(tenant_id, item, data)
        return True

    def _claim(self, tenant_id: str, item: _Pending, stage: str) -> bool:
        owner = uuid.uuid4().hex
        now = clock.now_ts()
        transition = life.claim(item.seen, owner=owner, lease_until=now + self.config.lease_seconds, now=now,
                                stage=stage)
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

    def _holds_claim(self, tenant_id: str, item: _Pending, owner: str) -> bool:
        """Whether a claim write whose answer was lost (or whose retry failed its condition on the claim the
        first try made) took effect: the stored lease owner says. Otherwise the message would sit claimed by
        nobody and end, unsent, as "outcome unknown"."""
        state = self.repo.get_states(tenant_id, [item.message_id]).get(item.message_id)
        return state is not None and state.get("lease_owner") == owner

    def _smtp_settings(self, tenant_id: str, account: Account) -> SmtpSettings:
        password = account.password
        return SmtpSettings(
            host=account.host,
            port=int(account.port),
            tls=account.tls_mode,
            user=account.user,
            password=decrypt(password, context=password_context(tenant_id, account.id)) if password else None,
            timeout=self.config.smtp_timeout,
            verify_tls=self.config.verify_tls,
            ca_file=self.config.ca_file,
            address_policy=self.config.address_policy,
        )

    @staticmethod
    def _render(tenant_id: str, item: _Pending, prepared: PreparedContent) -> tuple[bytes, str, list[str]]:
        payload = prepared.payload
        sender = envelope_sender(payload)
        if not payload.get("message_id"):
            # stable across attempts, so a retried message is the same message to its recipients
            seed = f"{tenant_id}/{item.message_id}/{item.state.get('created_ms', '')}".encode()
            domain = sender.rpartition("@")[2] or "mail-proxy.invalid"
            payload = {**payload, "message_id": f"<{hashlib.sha256(seed).hexdigest()[:32]}@{domain}>"}
        email = build_email(payload, tenant_id=tenant_id, message_id=item.message_id, now=clock.now_datetime(),
                            attachments=prepared.attachments, list_unsubscribe=prepared.list_unsubscribe,
                            proxy_tag=make_tag(key_ring(), tenant_id, item.message_id))
        return message_bytes(email), sender, envelope_recipients(payload)

    # ------------------------------------------------------------------------------------------ returned mail

    def _apply_bounce_settings(self, tenant: Tenant, group: list[_Pending]) -> list[_Pending]:
        """The tenant's ``return_path`` where a message gives none, and its suppression list: a message whose
        every recipient is suppressed fails with ``suppressed`` unsent; suppressed recipients of the others
        are left out (and named in the sent event). One BatchGetItem for the whole group, and none for a
        tenant that never had a suppression list."""
        if tenant.return_path:
            for item in group:
                if item.payload is not None and not item.payload.get("return_path"):
                    item.payload = {**item.payload, "return_path": tenant.return_path}
        recipients: dict[int, list[str]] = {}
        for index, item in enumerate(group):
            try:
                recipients[index] = envelope_recipients(item.payload) if item.payload else []
            except MalformedMessageError:
                recipients[index] = []  # rendering fails it with the reason
        wanted = {a.lower() for addresses in recipients.values() for a in addresses}
        has_list = tenant.has_suppressions  # a tenant that never had one costs no read at all
        suppressed = self.repo.suppressed(tenant.tenant_id, wanted) if wanted and has_list else {}
        if not suppressed:
            return group
        sendable = []
        for index, item in enumerate(group):
            blocked = [a.lower() for a in recipients[index]
                       if suppression_applies(suppressed.get(a.lower()), item.seen.batch_code)]
            if blocked and len(blocked) == len(recipients[index]):
                self._fail(tenant, item, "suppressed", attempted=False, failure_class=FailureClass.SUPPRESSED,
                           metadata={"suppressed": blocked[: life.REFUSALS_KEPT]})
                continue
            item.suppressed = blocked
            sendable.append(item)
        return sendable

    def _watch_pec(self, tenant_id: str, item: _Pending, data: bytes) -> None:
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

    # ------------------------------------------------------------------------------------------ rate limits

    def _apply_rate_limits(self, tenant: Tenant, account: Account, group: list[_Pending]
                           ) -> tuple[list[_Pending], list[tuple[Window, int, int]]]:
        """The messages that fit the account's windows, and the slots reserved for them (window, start, count)."""
        windows = account_windows(account)
        if not windows or not group:
            return group, []
        tenant_id = tenant.tenant_id
        now = clock.now()
        granted = len(group)
        reserved: list[tuple[Window, int, int]] = []
        limiting: Window | None = None
        for window in windows:
            start = window.start(now)
            got = self.repo.reserve_sends(tenant_id, account.id, window.name, start, window.seconds,
                                          granted, window.limit)
            if got < granted:
                limiting = window
                for earlier, earlier_start, count in reserved:  # give back what the tighter window will not use
                    self.repo.release_sends(tenant_id, account.id, earlier.name, earlier_start, count - got)
                reserved = [(w, s, got) for w, s, _ in reserved]
                granted = got
            reserved.append((window, start, got))
        if limiting is None:
            return group, reserved
        over = group[granted:]
        metrics.add_metric(name="MessagesRateLimited", unit=MetricUnit.Count, value=len(over))
        reason = f"rate_limit_exceeded: limit_per_{limiting.name}={limiting.limit}"
        for item in over:
            if account.rejects_over_limit:
                self._guarded(item, self._fail, tenant, item, reason, attempted=False,
                              failure_class=FailureClass.RATE_LIMIT)
            else:
                until = limiting.next_start(now)
                self._guarded(item, self._defer, tenant, item, reason, until, attempted=False)
        return group[:granted], reserved

    def _give_back_slots(self, tenant_id: str, account: Account, slots: list[tuple[Window, int, int]],
                         *, slots_used: int) -> None:
        """Slots reserved for messages that were not sent (failed, deferred, handed back) are released."""
        for window, start, count in slots:
            unused = count - slots_used
            if unused <= 0:
                continue
            try:
                self.repo.release_sends(tenant_id, account.id, window.name, start, unused)
            except Exception:  # the window simply stays a little tighter until it ends
                logger.exception("rate-limit slots not given back", extra={"tenant_id": tenant_id,
                                                                           "account_id": account.id})

    # ------------------------------------------------------------------------------------------ outcomes

    def _apply_failure(self, tenant: Tenant, item: _Pending, exc: SmtpDeliveryError) -> None:
        """The one place that turns a delivery error into retry-or-fail."""
        reason = exc.reason
        if exc.refused:
            refused = ", ".join(f"{addr}: {code}" for addr, (code, _) in list(exc.refused.items())[:10])
            more = len(exc.refused) - 10
            reason = f"{reason} ({refused}{f', and {more} more' if more > 0 else ''})"
        if isinstance(exc, SmtpPermanentError) or not exc.temporary:
            self._fail(tenant, item, reason, code=exc.code, failure_class=FailureClass.SMTP_PERMANENT)
            return
        self._retry_or_fail(tenant, item, reason, exc.code)

    def _retry_or_fail(self, tenant: Tenant, item: _Pending, reason: str, code: int | None) -> None:
        """A temporary failure: another attempt after the backoff, or an error once the retries are spent."""
        attempts = item.seen.attempts + 1
        delay = self.config.retry.delay_after(attempts)
        if delay is None:
            self._fail(tenant, item, f"gave up after {attempts} attempts: {reason}", code=code,
                       failure_class=FailureClass.RETRIES_EXHAUSTED)
            return
        self._defer(tenant, item, reason, clock.now_ts() + delay, code=code)

    def _accepted(self, tenant: Tenant, item: _Pending, outcome: SendOutcome) -> None:
        """Record the 250 now, whatever it takes: full, then minimal; kept for later if the table refuses."""
        assert item.owner is not None
        now = clock.now_ts()
        expires_at = self._expiry(tenant, now)
        full = life.accepted(item.seen, owner=item.owner, now=now, event_id=new_event_id(),
                             refused=dict(outcome.refused) if outcome.refused else None, warnings=item.warnings,
                             suppressed=item.suppressed, expires_at=expires_at)
        item.done = True
        item.status = MessageStatus.SENT
        try:
            self._write(tenant.tenant_id, item.message_id, full)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                self._keep_unrecorded(tenant.tenant_id, item.message_id, full, exc)
                return
        except Exception as exc:
            self._keep_unrecorded(tenant.tenant_id, item.message_id, full, exc)
            return
        # too large to write (an old item near DynamoDB's limit): the smallest write that still says "sent"
        minimal = life.accepted_minimal(item.seen, owner=item.owner, now=now, event_id=new_event_id(),
                                        expires_at=expires_at)
        try:
            self._write(tenant.tenant_id, item.message_id, minimal)
        except Exception as exc:
            self._keep_unrecorded(tenant.tenant_id, item.message_id, minimal, exc)

    def _keep_unrecorded(self, tenant_id: str, message_id: str, transition: life.Transition,
                         exc: BaseException) -> None:
        """The message was sent and its lease keeps every other sender off it; write the outcome later."""
        logger.error("accepted message's outcome not written yet; kept to write again",
                     extra={"tenant_id": tenant_id, "message_id": message_id, "error": type(exc).__name__})
        metrics.add_metric(name="OutcomesUnrecorded", unit=MetricUnit.Count, value=1)
        self._unrecorded = [*self._unrecorded[-(UNRECORDED_KEPT - 1):], _Unrecorded(tenant_id, transition, message_id)]

    def _write_unrecorded(self) -> None:
        pending, self._unrecorded = self._unrecorded, []
        for entry in pending:
            try:
                self.repo.apply_transition(entry.tenant_id, entry.message_id, entry.transition, now=clock.now_ts())
            except Exception as exc:
                self._keep_unrecorded(entry.tenant_id, entry.message_id, entry.transition, exc)

    def _fail(self, tenant: Tenant, item: _Pending, reason: str, *, code: int | None = None,
              attempted: bool = True, failure_class: FailureClass = FailureClass.OTHER,
              metadata: dict[str, Any] | None = None) -> None:
        now = clock.now_ts()
        transition = life.failed(item.seen, reason, now=now, event_id=new_event_id(), owner=item.owner, code=code,
                                 attempted=attempted, metadata=metadata, expires_at=self._expiry(tenant, now))
        if self._transition(tenant, item, transition):
            item.failure_class = failure_class
            item.error = reason

    def _defer(self, tenant: Tenant, item: _Pending, reason: str, until: int, *, code: int | None = None,
               attempted: bool = True) -> None:
        now = clock.now_ts()
        delay = max(0, until - now)
        # punctual retries ride on an SQS delay; the due time is the scheduler's safety net behind it
        requeue_delay = delay if delay <= MAX_SQS_DELAY else None
        due_ts = until + (120 if requeue_delay is not None else 0)
        transition = life.retry_later(item.seen, reason, until=until, now=now, event_id=new_event_id(),
                                      owner=item.owner, code=code, attempted=attempted, due_ts=due_ts)
        if self._transition(tenant, item, transition):
            item.retry_at = until
            item.requeue_delay = requeue_delay
            self._keep_content_until(tenant.tenant_id, item, due_ts)

    def _keep_content_until(self, tenant_id: str, item: _Pending, due_ts: int) -> None:
        """A deferral that reaches past the content's expiry (weeks of rate-limited backlog) extends it; any
        other costs no write (the content was stored to last ``PAYLOAD_TTL_SECONDS`` after submission)."""
        ttl = dynamo_keys.PAYLOAD_TTL_SECONDS
        created = (item.seen.created_ms or 0) // 1000
        if item.seen.payload_version and due_ts > created + ttl - CONTENT_MARGIN_SECONDS:
            self.repo.set_payload_expiry(tenant_id, item.message_id, item.seen.payload_version, due_ts + ttl)

    def _transition(self, tenant: Tenant, item: _Pending, transition: life.Transition) -> bool:
        item.done = True
        if not self._write(tenant.tenant_id, item.message_id, transition):
            return False  # someone else changed it meanwhile: theirs is the newer state
        item.status = transition.status
        return True

    def _write(self, tenant_id: str, message_id: str, transition: life.Transition) -> bool:
        """One conditional write, tried again on throttling and transient errors (not on a failed condition)."""
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                return self.repo.apply_transition(tenant_id, message_id, transition, now=clock.now_ts())
            except (ThrottledError, BotoCoreError, ClientError) as exc:
                if delay is None or (isinstance(exc, ClientError)
                                     and exc.response["Error"]["Code"] == "ValidationException"):
                    raise
                logger.warning("state write failed; trying again",
                               extra={"tenant_id": tenant_id, "message_id": message_id,
                                      "transition": transition.name, "error": type(exc).__name__})
                self.sleep(delay)
        return False

    def _guarded(self, item: _Pending, action: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run one message's outcome; an error writing it is logged and leaves the message to recovery
        (a waiting message is queued again by the scheduler; a claimed one after its lease)."""
        try:
            action(*args, **kwargs)
        except Exception:
            item.done = True
            logger.exception("message outcome not written; recovery picks it up",
                             extra={"message_id": item.message_id})

    def _settle_abandoned(self, tenant: Tenant, seen: life.Seen, report: DeliveryReport) -> None:
        """A claim whose sender died: ended or handed back (``scheduling.settle_abandoned`` decides)."""
        status = settle_abandoned(self.repo, tenant, seen, now=clock.now_ts())
        if status == MessageStatus.ERROR:
            report.failed += 1
            metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=1)
            count_failures_by_class({FailureClass.OUTCOME_UNKNOWN: 1})
        elif status == MessageStatus.PENDING:
            self.queue.enqueue(tenant.tenant_id, [(seen.priority, seen.message_id)])
            report.handed_back += 1
        else:
            report.skipped += 1

    @staticmethod
    def _expiry(tenant: Tenant, now: int) -> int | None:
        """Final messages of a tenant without a report URL expire after the retention period (the reporter
        sets the expiry of the others once their events are acknowledged)."""
        return None if tenant.reports_enabled else now + RETENTION_SECONDS

    def _report(self, tenant: Tenant, items: list[_Pending], report: DeliveryReport) -> None:
        tenant_id = tenant.tenant_id
        counts: dict[MessageStatus, int] = defaultdict(int)
        failures: dict[FailureClass, int] = defaultdict(int)
        delayed: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for item in items:
            if item.status is None:
                continue
            counts[item.status] += 1
            if item.status == MessageStatus.DEFERRED and item.requeue_delay is not None:
                delayed[item.requeue_delay].append((item.seen.priority, item.message_id))
            outcome: dict[str, Any] = {"tenant_id": tenant_id, "message_id": item.message_id,
                                       "status": item.status.value, "priority": item.seen.priority,
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


def _internal(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__}); retried later"
