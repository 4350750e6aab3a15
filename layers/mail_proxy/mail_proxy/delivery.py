"""Delivery of queued messages: claim, rate-limit, send over SMTP, record the outcome.

Guarantees:
- at most one send per message per claim: a message is claimed with a conditional write and a lease
  longer than the function's timeout, so a redelivered record or a second sender skips it;
- nothing lost: every claimed message ends sent, error, or deferred with a due time the scheduler
  watches; if time runs short the claim is handed back;
- temporary failures (4xx, network) are retried with backoff and jitter, sending the stored original each
  time; permanent ones (5xx, authentication, TLS, all recipients refused, malformed) fail at once.
The retry-or-fail decision is made in ``_apply_failure`` and nowhere else.
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
from botocore.exceptions import ClientError

from mail_proxy import clock
from mail_proxy.accounts import password_context
from mail_proxy.address_guard import AddressPolicy
from mail_proxy.attachments import AttachmentPermanentError, AttachmentTemporaryError
from mail_proxy.domain import MessageStatus, tenant_is_sending
from mail_proxy.errors import ThrottledError
from mail_proxy.message_content import MessageContent, PreparedContent
from mail_proxy.mime import MalformedMessageError, build_email, envelope_recipients, envelope_sender, message_bytes
from mail_proxy.observability import FailureClass, count_failures_by_class, id_list, logger, metrics
from mail_proxy.rate_limits import RetryPolicy, Window, account_windows
from mail_proxy.repository import MailRepository
from mail_proxy.secrets_config import decrypt
from mail_proxy.send_queue import SendQueue, new_event_id
from mail_proxy.smtp_client import ConnectionCache, SmtpDeliveryError, SmtpPermanentError, SmtpSettings

LEASE_SECONDS = 180  # longer than the sender's 60 s timeout: a live sender never loses its claim
STOP_MARGIN_MS = 15_000  # stop claiming when less than this is left, so outcomes are always written
IO_MARGIN_MS = 5_000  # an SMTP exchange or attachment fetch ends this long before the function would
MAX_SQS_DELAY = 900
RETENTION_SECONDS = 7 * 24 * 3600
PEC_WATCH_SECONDS = 30 * 24 * 3600  # how long a PEC message's Message-ID still leads its receipts to it


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
    """A claimed message on its way, and the state that will be written for it."""

    state: dict[str, Any]
    payload: dict[str, Any] | None
    due_ts: int | None = None
    requeue_delay: int | None = None
    handed_back: bool = False
    warnings: list[str] = field(default_factory=list)
    failure_class: FailureClass | None = None  # why it failed, for the MessagesFailed reason_class
    suppressed: list[str] = field(default_factory=list)  # recipients left out: on the tenant's suppression list


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
        self._tenants: dict[str, dict[str, Any] | None] = {}
        self._accounts: dict[tuple[str, str], dict[str, Any] | None] = {}

    def new_invocation(self) -> None:
        """Forget the tenants and accounts read so far: each invocation sees the current configuration once,
        instead of once per record (a batch of ten records is usually one tenant and one account)."""
        self._tenants.clear()
        self._accounts.clear()

    def _tenant(self, tenant_id: str) -> dict[str, Any] | None:
        if tenant_id not in self._tenants:
            self._tenants[tenant_id] = self.repo.get_tenant(tenant_id)
        return self._tenants[tenant_id]

    def _account(self, tenant_id: str, account_id: str) -> dict[str, Any] | None:
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
        owner = uuid.uuid4().hex
        claimed: list[dict[str, Any]] = []
        leftover: list[str] = []
        now = clock.now_ts()
        for mid in dict.fromkeys(message_ids):
            if remaining_ms() < STOP_MARGIN_MS:
                leftover.append(mid)
                continue
            state = self.repo.claim_message(tenant_id, mid, owner=owner,
                                            lease_until=now + self.config.lease_seconds)
            if state is None:
                report.skipped += 1
            elif not tenant_is_sending(tenant, state.get("batch_code")):
                self.repo.release_claim(tenant_id, mid, owner=owner, due_ts=now)
                report.handed_back += 1
            else:
                claimed.append(state)
        if leftover:
            self.queue.enqueue(tenant_id, [(priority, mid) for mid in leftover])
            report.handed_back += len(leftover)
        if not claimed:
            return report

        payloads = self.repo.get_payloads(tenant_id, claimed)
        by_account: dict[str, list[_Pending]] = defaultdict(list)
        for state in claimed:
            by_account[state.get("account_id") or ""].append(_Pending(state, payloads.get(state["id"])))
        for group in by_account.values():
            for pending in group:
                pending.payload = self.content.resolve(pending.payload)
        for account_id, group in by_account.items():
            try:
                self._deliver_group(tenant, account_id, group, owner, remaining_ms)
            finally:
                done = [p for p in group if not p.handed_back and p.state["status"] != MessageStatus.SENDING]
                self._record(tenant, done, report)
        return report

    # ------------------------------------------------------------------------------------------ sending

    def _deliver_group(self, tenant: dict[str, Any], account_id: str, group: list[_Pending], owner: str,
                       remaining_ms: Callable[[], int]) -> None:
        tenant_id = tenant["tenant_id"]
        account = self._account(tenant_id, account_id) if account_id else None
        if account is None:
            for item in group:
                self._fail(item, f"account '{account_id}' does not exist (deleted after submission?)",
                           failure_class=FailureClass.ACCOUNT_MISSING)
            return
        group = self._apply_bounce_settings(tenant, group)
        sendable = self._apply_rate_limits(tenant_id, account, group)
        settings = self._smtp_settings(tenant_id, account)
        for index, item in enumerate(sendable):
            if remaining_ms() < STOP_MARGIN_MS:
                for rest in sendable[index:]:
                    self.repo.release_claim(tenant_id, rest.state["id"], owner=owner, due_ts=clock.now_ts())
                    rest.handed_back = True
                return
            if item.payload is None:
                self._fail(item, "stored message content is missing", failure_class=FailureClass.CONTENT_MISSING)
                continue
            deadline = io_deadline(remaining_ms)
            try:
                prepared = self.content.prepare(tenant, item.state["id"], item.payload, deadline=deadline)
            except AttachmentPermanentError as exc:
                self._fail(item, f"attachment {exc}", failure_class=FailureClass.ATTACHMENT)
                continue
            except AttachmentTemporaryError as exc:
                self._retry_or_fail(item, f"attachment {exc}", None)
                continue
            item.warnings = prepared.warnings
            try:
                data, sender, recipients = self._render(tenant_id, item, prepared)
            except MalformedMessageError as exc:
                self._fail(item, f"malformed message: {exc}", failure_class=FailureClass.MALFORMED)
                continue
            if item.suppressed:
                recipients = [r for r in recipients if r.lower() not in item.suppressed]
            try:
                connection = self.connections.get(settings, deadline=deadline)
            except SmtpDeliveryError as exc:
                # the server cannot be reached or refuses us: the same answer applies to the whole group
                self.connections.discard(settings)
                for rest in sendable[index:]:
                    self._apply_failure(rest, exc)
                return
            try:
                outcome = connection.send(sender, recipients, data, deadline=deadline)
            except SmtpDeliveryError as exc:
                self.connections.discard(settings)
                self._apply_failure(item, exc)
                continue
            self._succeed(item, outcome.refused)
            if account.get("is_pec"):
                self._watch_pec(tenant_id, item, data)

    def _smtp_settings(self, tenant_id: str, account: dict[str, Any]) -> SmtpSettings:
        password = account.get("password")
        return SmtpSettings(
            host=account["host"],
            port=int(account["port"]),
            tls=account.get("tls", "starttls"),
            user=account.get("user"),
            password=decrypt(password, context=password_context(tenant_id, account["id"])) if password else None,
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
            seed = f"{tenant_id}/{item.state['id']}/{item.state.get('created_ms', '')}".encode()
            domain = sender.rpartition("@")[2] or "mail-proxy.invalid"
            payload = {**payload, "message_id": f"<{hashlib.sha256(seed).hexdigest()[:32]}@{domain}>"}
        email = build_email(payload, tenant_id=tenant_id, message_id=item.state["id"], now=clock.now_datetime(),
                            attachments=prepared.attachments)
        return message_bytes(email), sender, envelope_recipients(payload)

    # ------------------------------------------------------------------------------------------ returned mail

    def _apply_bounce_settings(self, tenant: dict[str, Any], group: list[_Pending]) -> list[_Pending]:
        """The tenant's ``return_path`` where a message gives none, and its suppression list: a message whose
        every recipient is suppressed fails with ``suppressed`` unsent; suppressed recipients of the others
        are left out (and named in the sent event). One BatchGetItem for the whole group, and none for a
        tenant that never had a suppression list."""
        if tenant.get("return_path"):
            for item in group:
                if item.payload is not None and not item.payload.get("return_path"):
                    item.payload = {**item.payload, "return_path": tenant["return_path"]}
        recipients: dict[int, list[str]] = {}
        for index, item in enumerate(group):
            try:
                recipients[index] = envelope_recipients(item.payload) if item.payload else []
            except MalformedMessageError:
                recipients[index] = []  # rendering fails it with the reason
        wanted = {a.lower() for addresses in recipients.values() for a in addresses}
        has_list = tenant.get("has_suppressions")  # a tenant that never had one costs no read at all
        suppressed = set(self.repo.suppressed(tenant["tenant_id"], wanted)) if wanted and has_list else set()
        if not suppressed:
            return group
        sendable = []
        for index, item in enumerate(group):
            blocked = [a.lower() for a in recipients[index] if a.lower() in suppressed]
            if blocked and len(blocked) == len(recipients[index]):
                self._fail(item, "suppressed", attempted=False, failure_class=FailureClass.SUPPRESSED)
                item.state["events"][-1]["metadata"] = {"suppressed": blocked}
                continue
            item.suppressed = blocked
            sendable.append(item)
        return sendable

    def _watch_pec(self, tenant_id: str, item: _Pending, data: bytes) -> None:
        """A message sent through a PEC account waits for its acceptance receipt (or ``pec_timeout``);
        its Message-ID is how receipts name it."""
        header = BytesHeaderParser().parsebytes(data).get("Message-ID")
        sent_ts = int(item.state.get("sent_ts") or clock.now_ts())
        try:
            self.repo.watch_pec_message(tenant_id, item.state["id"], sent_ts=sent_ts,
                                        message_id_header=str(header).strip() if header else None,
                                        expires_at=sent_ts + PEC_WATCH_SECONDS)
        except (ClientError, ThrottledError):
            logger.exception("PEC message not watched for its receipts",
                             extra={"tenant_id": tenant_id, "message_id": item.state["id"]})

    # ------------------------------------------------------------------------------------------ rate limits

    def _apply_rate_limits(self, tenant_id: str, account: dict[str, Any], group: list[_Pending]) -> list[_Pending]:
        windows = account_windows(account)
        if not windows:
            return group
        now = clock.now()
        granted = len(group)
        reserved: list[tuple[Window, int]] = []
        limiting: Window | None = None
        for window in windows:
            got = self.repo.reserve_sends(tenant_id, account["id"], window.name, window.start(now), window.seconds,
                                          granted, window.limit)
            if got < granted:
                limiting = window
                for earlier, count in reserved:  # give back what the tighter window will not use
                    self.repo.release_sends(tenant_id, account["id"], earlier.name, earlier.start(now),
                                            count - got)
                reserved = [(w, got) for w, _ in reserved]
                granted = got
            reserved.append((window, got))
        if limiting is None:
            return group
        over = group[granted:]
        metrics.add_metric(name="MessagesRateLimited", unit=MetricUnit.Count, value=len(over))
        reason = f"rate_limit_exceeded: limit_per_{limiting.name}={limiting.limit}"
        for item in over:
            if account.get("limit_behavior") == "reject":
                self._fail(item, reason, attempted=False, failure_class=FailureClass.RATE_LIMIT)
            else:
                self._defer(item, reason, limiting.next_start(now), attempted=False)
        return group[:granted]

    # ------------------------------------------------------------------------------------------ outcomes

    def _apply_failure(self, item: _Pending, exc: SmtpDeliveryError) -> None:
        """The one place that turns a delivery error into retry-or-fail."""
        reason = exc.reason
        if exc.refused:
            refused = ", ".join(f"{addr}: {code}" for addr, (code, _) in list(exc.refused.items())[:10])
            reason = f"{reason} ({refused})"
        if isinstance(exc, SmtpPermanentError) or not exc.temporary:
            self._fail(item, reason, code=exc.code, failure_class=FailureClass.SMTP_PERMANENT)
            return
        self._retry_or_fail(item, reason, exc.code)

    def _retry_or_fail(self, item: _Pending, reason: str, code: int | None) -> None:
        """A temporary failure: another attempt after the backoff, or an error once the retries are spent."""
        attempts = int(item.state.get("attempts", 0)) + 1
        delay = self.config.retry.delay_after(attempts)
        if delay is None:
            self._fail(item, f"gave up after {attempts} attempts: {reason}", code=code,
                       failure_class=FailureClass.RETRIES_EXHAUSTED)
            return
        self._defer(item, reason, clock.now_ts() + delay, code=code)

    def _succeed(self, item: _Pending, refused: Any) -> None:
        now = clock.now_ts()
        state = item.state
        state["status"] = MessageStatus.SENT
        state["sent_ts"] = now
        state["attempts"] = int(state.get("attempts", 0)) + 1
        state.pop("error", None)
        state.pop("deferred_ts", None)
        metadata: dict[str, Any] = {}
        if refused:
            metadata["refused"] = {a: f"{c} {r}" for a, (c, r) in dict(refused).items()}
        if item.warnings:
            metadata["warnings"] = item.warnings
        if item.suppressed:
            metadata["suppressed"] = item.suppressed
        self._event(state, "sent", "sent", metadata or None)
        item.due_ts = None

    def _fail(self, item: _Pending, reason: str, *, code: int | None = None, attempted: bool = True,
              failure_class: FailureClass = FailureClass.OTHER) -> None:
        item.failure_class = failure_class
        now = clock.now_ts()
        state = item.state
        state["status"] = MessageStatus.ERROR
        state["error"] = reason
        state["error_ts"] = now
        state.pop("deferred_ts", None)
        if attempted:
            state["attempts"] = int(state.get("attempts", 0)) + 1
        self._event(state, "error", reason, {"smtp_code": code} if code else None)
        item.due_ts = None

    def _defer(self, item: _Pending, reason: str, until: int, *, code: int | None = None,
               attempted: bool = True) -> None:
        state = item.state
        state["status"] = MessageStatus.DEFERRED
        state["deferred_ts"] = until
        if attempted:
            state["attempts"] = int(state.get("attempts", 0)) + 1
        metadata: dict[str, Any] = {"retry_at": until, "attempt": state.get("attempts", 0)}
        if code:
            metadata["smtp_code"] = code
        self._event(state, "deferred", reason, metadata)
        delay = max(0, until - clock.now_ts())
        # punctual retries ride on an SQS delay; the due time is the scheduler's safety net behind it
        item.requeue_delay = delay if delay <= MAX_SQS_DELAY else None
        item.due_ts = until + (120 if item.requeue_delay is not None else 0)

    @staticmethod
    def _event(state: dict[str, Any], kind: str, description: str, metadata: dict[str, Any] | None) -> None:
        event: dict[str, Any] = {"event_id": new_event_id(), "type": kind, "ts": clock.now_ts(),
                                 "description": description[:1000]}
        if metadata:
            event["metadata"] = metadata
        state["events"] = [*(state.get("events") or []), event]
        state["updated_at"] = clock.now_iso()

    def _record(self, tenant: dict[str, Any], done: list[_Pending], report: DeliveryReport) -> None:
        if not done:
            return
        tenant_id = tenant["tenant_id"]
        if not tenant.get("client_base_url"):
            # nobody to report to: final messages expire after the retention period (the reporter sets
            # the expiry for tenants with a report URL once their events are acknowledged)
            expiry = clock.now_ts() + RETENTION_SECONDS
            for item in done:
                if item.state["status"] in (MessageStatus.SENT, MessageStatus.ERROR):
                    item.state["expires_at"] = expiry
        self.repo.save_outcomes(tenant_id, [(p.state, p.due_ts) for p in done])
        counts = {MessageStatus.SENT: 0, MessageStatus.ERROR: 0, MessageStatus.DEFERRED: 0}
        failures: dict[FailureClass, int] = defaultdict(int)
        delayed: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for item in done:
            status = MessageStatus(item.state["status"])
            counts[status] = counts.get(status, 0) + 1
            if status == MessageStatus.DEFERRED and item.requeue_delay is not None:
                delayed[item.requeue_delay].append((item.state.get("priority", 2), item.state["id"]))
            outcome: dict[str, Any] = {"tenant_id": tenant_id, "message_id": item.state["id"],
                                       "status": status.value, "attempts": item.state.get("attempts"),
                                       "priority": item.state.get("priority"), "error": item.state.get("error")}
            if status == MessageStatus.ERROR:
                failure = item.failure_class or FailureClass.OTHER
                failures[failure] += 1
                outcome["reason_class"] = failure.value
            elif status == MessageStatus.DEFERRED:
                outcome["retry_at"] = item.state.get("deferred_ts")
            logger.info("message outcome", extra=outcome)
        for delay, entries in delayed.items():
            self.queue.enqueue(tenant_id, entries, delay_seconds=delay)
        report.sent += counts[MessageStatus.SENT]
        report.failed += counts[MessageStatus.ERROR]
        report.deferred += counts[MessageStatus.DEFERRED]
        if counts[MessageStatus.SENT]:
            metrics.add_metric(name="MessagesSent", unit=MetricUnit.Count, value=counts[MessageStatus.SENT])
        if counts[MessageStatus.DEFERRED]:
            metrics.add_metric(name="MessagesDeferred", unit=MetricUnit.Count, value=counts[MessageStatus.DEFERRED])
        if counts[MessageStatus.ERROR]:
            metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=counts[MessageStatus.ERROR])
            count_failures_by_class(failures)
