"""Bounce and complaint rates, and what they mean against a tenant's thresholds (pure: no AWS, no I/O).

The counts live in one item per tenant and hour (``bucket_start``): ``sent``, ``bounced`` (hard bounces) and
``complained``, and the same per SMTP account as ``sent@<account id>``... Every send, hard bounce and
complaint adds to the current hour's item (DynamoDB ``ADD``), so nothing is ever scanned: a judgement reads
the tenant's last ``window_hours`` items with one Query. A rate is its count over the messages sent in the
window; nothing is judged before ``min_sends`` were sent in it (a handful of messages says nothing).

An administrator's resume starts the count afresh: the buckets before the resume no longer count, and the
hour of the resume counts only what came after it (its counts at the resume are kept as a baseline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.tenant_models import ReputationThresholds

BUCKET_SECONDS = 3600
SENT = "sent"
BOUNCED = "bounced"
COMPLAINED = "complained"
KINDS = (SENT, BOUNCED, COMPLAINED)
ACCOUNT_MARK = "@"  # "sent@smtp1": the account's share of the tenant's count


def bucket_start(ts: int) -> int:
    return ts - ts % BUCKET_SECONDS


def window_start(now: int, window_hours: int) -> int:
    """The first bucket of a window of ``window_hours`` whole hours that ends with the current one."""
    return bucket_start(now) - (window_hours - 1) * BUCKET_SECONDS


def counter_names(kind: str, account_id: str | None) -> list[str]:
    """The attributes one event adds to: the tenant's counter, and its account's when it has one."""
    return [kind, f"{kind}{ACCOUNT_MARK}{account_id}"] if account_id else [kind]


@dataclass(frozen=True)
class Counts:
    sent: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class WindowCounts:
    tenant: Counts = Counts()
    accounts: dict[str, Counts] = field(default_factory=dict)


def _bucket_counts(counters: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, int]:
    """Counter attributes of one bucket, less the baseline's (never below zero)."""
    found: dict[str, int] = {}
    for name, value in counters.items():
        kind = name.partition(ACCOUNT_MARK)[0]
        if kind in KINDS and isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = max(0, int(value) - int(baseline.get(name) or 0))
    return found


def window_counts(buckets: Iterable[Mapping[str, Any]], *, since: int,
                  baseline: Mapping[str, Any] | None = None) -> WindowCounts:
    """Sums over the buckets that start at or after ``since`` (``bucket`` is each one's start).

    ``baseline`` (``{"bucket": start, "counts": {name: n}}``, written at a resume) drops every bucket
    before its own and subtracts its counts from its own bucket.
    """
    base_bucket = int(baseline["bucket"]) if baseline and "bucket" in baseline else None
    base_counts: Mapping[str, Any] = (baseline or {}).get("counts") or {}
    tenant: dict[str, int] = dict.fromkeys(KINDS, 0)
    accounts: dict[str, dict[str, int]] = {}
    for bucket in buckets:
        start = int(bucket["bucket"])
        if start < since or (base_bucket is not None and start < base_bucket):
            continue
        counts = _bucket_counts(bucket, base_counts if start == base_bucket else {})
        for name, value in counts.items():
            kind, mark, account_id = name.partition(ACCOUNT_MARK)
            if mark:
                accounts.setdefault(account_id, dict.fromkeys(KINDS, 0))[kind] += value
            else:
                tenant[kind] += value
    return WindowCounts(Counts(**tenant), {a: Counts(**c) for a, c in sorted(accounts.items())})


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PAUSE = "paused"


@dataclass(frozen=True)
class Verdict:
    level: Level
    reason: str | None = None
    judged: bool = False  # the window held enough messages sent to judge


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%".replace(".00%", "%")


def judge(counts: Counts, thresholds: ReputationThresholds) -> Verdict:
    """Where the rates stand against the thresholds; a rate at a threshold has crossed it (SES: pause at 10%).

    A rate counts only from ``min_events`` events on (one complaint of 150 sent is 0.67 %, past the pause
    threshold, and says nothing). The reason names the rate, the threshold and the counts; a pause is reported
    only when pausing is on
    (``thresholds.pause``), a warning otherwise.
    """
    if counts.sent < thresholds.min_sends:
        return Verdict(Level.OK)
    window = f"over the last {thresholds.window_hours} h"
    bounce = (f"bounce rate {_percent(counts.bounce_rate)} {window} ({counts.bounced} hard bounces of "
              f"{counts.sent} sent)")
    complaint = (f"complaint rate {_percent(counts.complaint_rate)} {window} ({counts.complained} complaints of "
                 f"{counts.sent} sent)")
    bounces_count = counts.bounced >= thresholds.min_events
    complaints_count = counts.complained >= thresholds.min_events
    pauses = ([f"{bounce} reached the pause threshold {_percent(thresholds.bounce_pause)}"]
              if bounces_count and counts.bounce_rate >= thresholds.bounce_pause else [])
    pauses += ([f"{complaint} reached the pause threshold {_percent(thresholds.complaint_pause)}"]
               if complaints_count and counts.complaint_rate >= thresholds.complaint_pause else [])
    if pauses and thresholds.pause:
        return Verdict(Level.PAUSE, "; ".join(pauses), judged=True)
    warnings = ([f"{bounce} reached the warn threshold {_percent(thresholds.bounce_warn)}"]
                if bounces_count and counts.bounce_rate >= thresholds.bounce_warn else [])
    warnings += ([f"{complaint} reached the warn threshold {_percent(thresholds.complaint_warn)}"]
                 if complaints_count and counts.complaint_rate >= thresholds.complaint_warn else [])
    if warnings:
        return Verdict(Level.WARNING, "; ".join(warnings), judged=True)
    return Verdict(Level.OK, judged=True)


def thresholds_of(tenant: Tenant) -> ReputationThresholds:
    """The tenant's thresholds, the defaults for any it does not set."""
    return ReputationThresholds(**(tenant.reputation_thresholds or {}))
