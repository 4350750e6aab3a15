"""What became of each message the sender read: the transitions it writes, and the one retry-or-fail rule.

Every message read for sending leaves with an explicit transition (sent, error with a reason, deferred with
a due time, held, or handed back). The retry-or-fail decision is made in :meth:`OutcomeRecorder.apply_failure`
and :meth:`OutcomeRecorder.retry_or_fail` and nowhere else. A 250 is recorded whatever it takes: the full
outcome, then a minimal one, and one the table still refuses is kept and written at the container's next
invocation (its lease keeps every other sender off it meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from mail_proxy.adapters.dynamodb import keys as dynamo_keys
from mail_proxy.adapters.observability import FailureClass, logger, metrics
from mail_proxy.adapters.send_queue import new_event_id
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.message_lifecycle import MessageState, Transition
from mail_proxy.domain.models import RETENTION_SECONDS, MessageStatus
from mail_proxy.domain.rate_limits import RetryPolicy
from mail_proxy.errors import ThrottledError
from mail_proxy.mail.smtp_replies import SendOutcome, SmtpDeliveryError, SmtpPermanentError
from mail_proxy.usecases.ports import MessageStates

MAX_SQS_DELAY = 900
WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)  # an outcome write that failed is tried again this often
CONTENT_MARGIN_SECONDS = 86400  # a deferral this close to the content's expiry extends it
UNRECORDED_KEPT = 1000  # accepted messages whose outcome could not be written, kept to write later
DUE_AFTER_SQS_DELAY = 120  # a retry carried by an SQS delay is looked at by the scheduler this much later


@dataclass
class PendingMessage:
    """A message read for sending, and what became of it."""

    item: dict[str, Any]  # the state item as read (handed back to the repository only)
    state: MessageState
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

    @property
    def message_id(self) -> str:
        return self.state.message_id


@dataclass
class _Unrecorded:
    """An acceptance whose write failed: retried at the next invocation of this container."""

    tenant_id: str
    transition: Transition
    message_id: str


def internal_reason(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__}); retried later"


def final_expiry(tenant: Tenant, now: int) -> int | None:
    """Final messages of a tenant without a report URL expire after the retention period (the reporter
    sets the expiry of the others once their events are acknowledged)."""
    return None if tenant.reports_enabled else now + RETENTION_SECONDS


class OutcomeRecorder:
    """Writes each message's outcome as one conditional transition, tried again on throttling."""

    def __init__(self, states: MessageStates, retry: RetryPolicy) -> None:
        self.states = states
        self.retry = retry
        self.sleep: Callable[[float], None] = time.sleep
        self._unrecorded: list[_Unrecorded] = []

    # ------------------------------------------------------------------------------------------ decisions

    def apply_failure(self, tenant: Tenant, item: PendingMessage, exc: SmtpDeliveryError) -> None:
        """The one place that turns a delivery error into retry-or-fail."""
        reason = exc.reason
        if exc.refused:
            refused = ", ".join(f"{addr}: {code}" for addr, (code, _) in list(exc.refused.items())[:10])
            more = len(exc.refused) - 10
            reason = f"{reason} ({refused}{f', and {more} more' if more > 0 else ''})"
        if isinstance(exc, SmtpPermanentError) or not exc.temporary:
            self.fail(tenant, item, reason, code=exc.code, failure_class=FailureClass.SMTP_PERMANENT)
            return
        self.retry_or_fail(tenant, item, reason, exc.code)

    def retry_or_fail(self, tenant: Tenant, item: PendingMessage, reason: str, code: int | None) -> None:
        """A temporary failure: another attempt after the backoff, or an error once the retries are spent."""
        attempts = item.state.next_attempt
        delay = self.retry.delay_after(attempts)
        if delay is None:
            self.fail(tenant, item, f"gave up after {attempts} attempts: {reason}", code=code,
                      failure_class=FailureClass.RETRIES_EXHAUSTED)
            return
        self.defer(tenant, item, reason, clock.now_ts() + delay, code=code)

    # ------------------------------------------------------------------------------------------ transitions

    def accepted(self, tenant: Tenant, item: PendingMessage, outcome: SendOutcome) -> None:
        """Record the 250 now, whatever it takes: full, then minimal; kept for later if the table refuses."""
        assert item.owner is not None
        tenant_id = tenant.tenant_id
        now = clock.now_ts()
        expires_at = final_expiry(tenant, now)
        full = item.state.accepted(owner=item.owner, now=now, event_id=new_event_id(),
                                   refused=dict(outcome.refused) if outcome.refused else None,
                                   warnings=item.warnings, suppressed=item.suppressed, expires_at=expires_at)
        item.done = True
        item.status = MessageStatus.SENT
        try:
            self.write(tenant_id, item.message_id, full)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                self._keep_unrecorded(tenant_id, item.message_id, full, exc)
                return
        except Exception as exc:
            self._keep_unrecorded(tenant_id, item.message_id, full, exc)
            return
        # too large to write (an old item near DynamoDB's limit): the smallest write that still says "sent"
        minimal = item.state.accepted_minimal(owner=item.owner, now=now, event_id=new_event_id(),
                                              expires_at=expires_at)
        try:
            self.write(tenant_id, item.message_id, minimal)
        except Exception as exc:
            self._keep_unrecorded(tenant_id, item.message_id, minimal, exc)

    def fail(self, tenant: Tenant, item: PendingMessage, reason: str, *, code: int | None = None,
             attempted: bool = True, failure_class: FailureClass = FailureClass.OTHER,
             metadata: dict[str, Any] | None = None) -> None:
        now = clock.now_ts()
        transition = item.state.failed(reason, now=now, event_id=new_event_id(), owner=item.owner, code=code,
                                       attempted=attempted, metadata=metadata, expires_at=final_expiry(tenant, now))
        if self.transition(tenant, item, transition):
            item.failure_class = failure_class
            item.error = reason

    def defer(self, tenant: Tenant, item: PendingMessage, reason: str, until: int, *,
              code: int | None = None, attempted: bool = True) -> None:
        now = clock.now_ts()
        delay = max(0, until - now)
        # punctual retries ride on an SQS delay; the due time is the scheduler's safety net behind it
        requeue_delay = delay if delay <= MAX_SQS_DELAY else None
        due_ts = until + (DUE_AFTER_SQS_DELAY if requeue_delay is not None else 0)
        transition = item.state.retry_later(reason, until=until, now=now, event_id=new_event_id(), owner=item.owner,
                                            code=code, attempted=attempted, due_ts=due_ts)
        if self.transition(tenant, item, transition):
            item.retry_at = until
            item.requeue_delay = requeue_delay
            self._keep_content_until(tenant.tenant_id, item, due_ts)

    def _keep_content_until(self, tenant_id: str, item: PendingMessage, due_ts: int) -> None:
        """A deferral that reaches past the content's expiry (weeks of rate-limited backlog) extends it; any
        other costs no write (the content was stored to last ``PAYLOAD_TTL_SECONDS`` after submission)."""
        ttl = dynamo_keys.PAYLOAD_TTL_SECONDS
        created = (item.state.created_ms or 0) // 1000
        version = item.state.payload_version
        if version and due_ts > created + ttl - CONTENT_MARGIN_SECONDS:
            self.states.set_payload_expiry(tenant_id, item.message_id, version, due_ts + ttl)

    def transition(self, tenant: Tenant, item: PendingMessage, transition: Transition) -> bool:
        item.done = True
        if not self.write(tenant.tenant_id, item.message_id, transition):
            return False  # someone else changed it meanwhile: theirs is the newer state
        item.status = transition.status
        return True

    def write(self, tenant_id: str, message_id: str, transition: Transition) -> bool:
        """One conditional write, tried again on throttling and transient errors (not on a failed condition)."""
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                return self.states.apply_transition(tenant_id, message_id, transition, now=clock.now_ts())
            except (ThrottledError, BotoCoreError, ClientError) as exc:
                if delay is None or (isinstance(exc, ClientError)
                                     and exc.response["Error"]["Code"] == "ValidationException"):
                    raise
                logger.warning("state write failed; trying again",
                               extra={"tenant_id": tenant_id, "message_id": message_id,
                                      "transition": transition.name, "error": type(exc).__name__})
                self.sleep(delay)
        return False

    def guarded(self, item: PendingMessage, action: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run one message's outcome; an error writing it is logged and leaves the message to recovery
        (a waiting message is queued again by the scheduler; a claimed one after its lease)."""
        try:
            action(*args, **kwargs)
        except Exception:
            item.done = True
            logger.exception("message outcome not written; recovery picks it up",
                             extra={"message_id": item.message_id})

    # ------------------------------------------------------------------------------------------ unrecorded

    def _keep_unrecorded(self, tenant_id: str, message_id: str, transition: Transition, exc: BaseException) -> None:
        """The message was sent and its lease keeps every other sender off it; write the outcome later."""
        logger.error("accepted message's outcome not written yet; kept to write again",
                     extra={"tenant_id": tenant_id, "message_id": message_id, "error": type(exc).__name__})
        metrics.add_metric(name="OutcomesUnrecorded", unit=MetricUnit.Count, value=1)
        self._unrecorded = [*self._unrecorded[-(UNRECORDED_KEPT - 1):], _Unrecorded(tenant_id, transition, message_id)]

    def write_unrecorded(self) -> None:
        pending, self._unrecorded = self._unrecorded, []
        for entry in pending:
            try:
                self.states.apply_transition(entry.tenant_id, entry.message_id, entry.transition, now=clock.now_ts())
            except Exception as exc:
                self._keep_unrecorded(entry.tenant_id, entry.message_id, entry.transition, exc)
