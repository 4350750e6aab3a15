"""The reputation guard: counts sends, hard bounces and complaints, and warns about or pauses a tenant.

- The sender adds its accepted messages (``record``, once per account group); the bounce poller adds each
  hard bounce and complaint it records, then judges the tenant (``judge``): rates only rise with a bounce
  or a complaint, so that is when a threshold can be crossed.
- Crossing a warn threshold sets ``reputation_warning`` on the tenant and counts ``ReputationWarnings``;
  crossing a pause threshold sets ``reputation_paused`` (with ``reputation_paused_reason`` and
  ``reputation_paused_at``), counts ``ReputationPauses`` (both metrics have alarms) and holds the tenant's
  messages exactly as an administrator's suspension does (``Tenant.is_sending``), while its token
  keeps working so the application can read why in ``/status``. Each state change is a conditional write,
  so its metric and its audit entry happen once however many pollers judge at the same time.
- Only an administrator lifts a pause (``POST /tenant/{id}/resume``); the resume restarts the count
  (``resume_changes``), or the rates that caused the pause would pause the tenant again at its next bounce.
- Counting never fails a delivery or a poll: a counter write that fails is logged and dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger, metrics
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.reputation import (
    BUCKET_SECONDS,
    Counts,
    Level,
    Verdict,
    WindowCounts,
    bucket_start,
    counter_names,
    judge,
    thresholds_of,
    window_counts,
    window_start,
)
from mail_proxy.domain.tenant_models import ReputationRates, ReputationView
from mail_proxy.errors import ThrottledError
from mail_proxy.usecases import audit
from mail_proxy.usecases.ports import SendCounts

MAX_WINDOW_HOURS = 168
COUNTER_TTL_SECONDS = (MAX_WINDOW_HOURS + 2) * BUCKET_SECONDS
PAUSE_FIELDS = ("reputation_paused", "reputation_paused_reason", "reputation_paused_at")
WARNING_FIELDS = ("reputation_warning", "reputation_warning_at")


def rates_view(counts: Counts) -> ReputationRates:
    return ReputationRates(sent=counts.sent, bounced=counts.bounced, complained=counts.complained,
                           bounce_rate=round(counts.bounce_rate, 6), complaint_rate=round(counts.complaint_rate, 6))


def state_of(tenant: Tenant) -> Literal["ok", "warning", "paused"]:
    if tenant.reputation_paused:
        return "paused"
    return "warning" if tenant.reputation_warning else "ok"


def stored_view(tenant: Tenant) -> ReputationView:
    """The guard's state as the tenant item keeps it (no rates: those cost a query)."""
    return ReputationView(state=state_of(tenant), paused_reason=tenant.reputation_paused_reason,
                          paused_at=tenant.reputation_paused_at, warning=tenant.reputation_warning,
                          thresholds=thresholds_of(tenant))


class ReputationCounter:
    """The counting half of the guard: all the sender needs (it never judges)."""

    def __init__(self, counts: SendCounts) -> None:
        self.store = counts

    def record(self, tenant_id: str, account_id: str | None, kind: str, count: int = 1) -> None:
        """Add ``count`` to this hour's ``kind`` counter of the tenant (and its account)."""
        if count <= 0:
            return
        now = clock.now_ts()
        bucket = bucket_start(now)
        try:
            self.store.add_reputation_counts(tenant_id, bucket, dict.fromkeys(counter_names(kind, account_id), count),
                                             expires_at=bucket + COUNTER_TTL_SECONDS)
        except (ThrottledError, BotoCoreError, ClientError) as exc:  # a count lost never holds up mail
            logger.warning("reputation counter not written", extra={"tenant_id": tenant_id, "account_id": account_id,
                                                                    "kind": kind, "count": count,
                                                                    "error": type(exc).__name__})


class ReputationGuard(ReputationCounter):
    def __init__(self, repo: MailRepository) -> None:
        super().__init__(repo)
        self.repo = repo

    def counts(self, tenant: Tenant) -> WindowCounts:
        since = window_start(clock.now_ts(), thresholds_of(tenant).window_hours)
        return window_counts(self.repo.reputation_buckets(tenant.tenant_id, since), since=since,
                             baseline=tenant.reputation_baseline)

    # -------------------------------------------------------------------------------------- judging

    def judge(self, tenant_id: str) -> Verdict | None:
        """Judge the tenant's rates now; pause or warn on a crossing, clear a warning that no longer holds."""
        tenant = self.repo.get_tenant(tenant_id)
        if tenant is None:
            return None
        verdict = judge(self.counts(tenant).tenant, thresholds_of(tenant))
        where = {"tenant_id": tenant_id, "reason": verdict.reason}
        if verdict.level is Level.PAUSE and not tenant.reputation_paused:
            changes = {"reputation_paused": True, "reputation_paused_reason": verdict.reason,
                       "reputation_paused_at": clock.now_iso(), "updated_at": clock.now_iso()}
            if self.repo.update_tenant_unless_set(tenant_id, changes, "reputation_paused"):
                logger.warning("tenant paused by the reputation guard; its messages wait", extra=where)
                metrics.add_metric(name="ReputationPauses", unit=MetricUnit.Count, value=1)
                audit.record(self.repo, command="reputation_pause", tenant_id=tenant_id,
                             payload={"reason": verdict.reason},
                             message=f"Tenant '{tenant_id}' paused by the reputation guard: {verdict.reason}")
        if verdict.level in (Level.WARNING, Level.PAUSE) and not tenant.reputation_warning:
            changes = {"reputation_warning": verdict.reason, "reputation_warning_at": clock.now_iso()}
            if self.repo.update_tenant_unless_set(tenant_id, changes, "reputation_warning"):
                logger.warning("tenant's bounce or complaint rate crossed a warn threshold", extra=where)
                metrics.add_metric(name="ReputationWarnings", unit=MetricUnit.Count, value=1)
        elif verdict.level is Level.OK and verdict.judged and tenant.reputation_warning:
            self.repo.update_tenant(tenant_id, {}, list(WARNING_FIELDS))
        return verdict

    # -------------------------------------------------------------------------------------- reading

    def view(self, tenant: Tenant) -> ReputationView:
        """The stored state with the rates over the window, the tenant's and each account's."""
        counts = self.counts(tenant)
        thresholds = thresholds_of(tenant)
        view = stored_view(tenant)
        view.judged = counts.tenant.sent >= thresholds.min_sends
        view.rates = rates_view(counts.tenant)
        view.accounts = {account_id: rates_view(c) for account_id, c in counts.accounts.items()}
        return view

    # -------------------------------------------------------------------------------------- resuming

    def resume_changes(self, tenant: Tenant) -> tuple[dict[str, Any], list[str]]:
        """What an administrator's resume writes: the pause and warning lifted, and the count restarted
        (this hour's counters so far become the baseline; earlier hours stop counting)."""
        bucket = bucket_start(clock.now_ts())
        current = next((b for b in self.repo.reputation_buckets(tenant.tenant_id, bucket) if b["bucket"] == bucket),
                       {})
        counts = {k: v for k, v in current.items() if k != "bucket"}
        return {"reputation_baseline": {"bucket": bucket, "counts": counts}}, [*PAUSE_FIELDS, *WARNING_FIELDS]
