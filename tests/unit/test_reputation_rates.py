"""The reputation guard's arithmetic: hour buckets summed over a window, a resume's baseline, and the
verdict against SES-like thresholds (pure: no AWS)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.reputation import (
    BUCKET_SECONDS,
    Counts,
    Level,
    Verdict,
    bucket_start,
    counter_names,
    judge,
    thresholds_of,
    window_counts,
    window_start,
)
from mail_proxy.domain.tenant_models import ReputationThresholds

HOUR = BUCKET_SECONDS
DEFAULTS = ReputationThresholds()


def test_defaults_are_ses_like() -> None:
    assert (DEFAULTS.bounce_warn, DEFAULTS.bounce_pause) == (0.05, 0.10)
    assert (DEFAULTS.complaint_warn, DEFAULTS.complaint_pause) == (0.001, 0.005)
    assert DEFAULTS.pause is True and DEFAULTS.min_sends >= 1


def test_nothing_is_judged_below_the_minimum_volume() -> None:
    verdict = judge(Counts(sent=99, bounced=99), DEFAULTS)
    assert verdict.level is Level.OK and not verdict.judged


def test_a_rate_at_the_pause_threshold_pauses_and_names_rate_threshold_and_counts() -> None:
    verdict = judge(Counts(sent=200, bounced=20), DEFAULTS)
    assert verdict.level is Level.PAUSE
    assert verdict.reason is not None
    assert "bounce rate 10%" in verdict.reason and "pause threshold 10%" in verdict.reason
    assert "20 hard bounces of 200 sent" in verdict.reason


def test_between_warn_and_pause_is_a_warning() -> None:
    verdict = judge(Counts(sent=200, bounced=12), DEFAULTS)
    assert verdict.level is Level.WARNING and "warn threshold 5%" in (verdict.reason or "")
    assert judge(Counts(sent=1500, complained=3), DEFAULTS).level is Level.WARNING  # 0.2%


def test_a_rate_counts_only_from_a_few_events_on() -> None:
    # one complaint of 150 sent is 0.67 %: past the pause threshold, and one recipient's say
    assert judge(Counts(sent=150, complained=1), DEFAULTS) == Verdict(Level.OK, judged=True)
    assert judge(Counts(sent=150, complained=2, bounced=2), DEFAULTS).level is Level.OK
    assert judge(Counts(sent=150, complained=3), DEFAULTS).level is Level.PAUSE
    assert judge(Counts(sent=20, bounced=3), DEFAULTS.model_copy(update={"min_sends": 10})).level is Level.PAUSE
    assert judge(Counts(sent=150, complained=1), DEFAULTS.model_copy(update={"min_events": 1})).level is Level.PAUSE


def test_complaints_pause_at_half_a_percent() -> None:
    assert judge(Counts(sent=1000, complained=4), DEFAULTS).level is Level.WARNING
    verdict = judge(Counts(sent=1000, complained=5), DEFAULTS)
    assert verdict.level is Level.PAUSE and "complaint rate 0.50%" in (verdict.reason or "")


def test_below_every_threshold_is_ok_and_judged() -> None:
    verdict = judge(Counts(sent=1000, bounced=49, complained=0), DEFAULTS)
    assert verdict.level is Level.OK and verdict.judged


def test_with_pausing_off_a_pause_rate_is_only_a_warning() -> None:
    verdict = judge(Counts(sent=100, bounced=50), ReputationThresholds(pause=False))
    assert verdict.level is Level.WARNING


def test_a_warn_threshold_above_its_pause_threshold_is_refused() -> None:
    with pytest.raises(ValidationError):
        ReputationThresholds(bounce_warn=0.2, bounce_pause=0.1)
    with pytest.raises(ValidationError):
        ReputationThresholds(window_hours=0)
    with pytest.raises(ValidationError):  # a number DynamoDB cannot store is refused before it is written
        ReputationThresholds(complaint_warn=1e-200)


def test_stored_thresholds_fill_in_the_defaults() -> None:
    assert thresholds_of(Tenant("acme", reputation_thresholds={"min_sends": 5})) == ReputationThresholds(min_sends=5)
    assert thresholds_of(Tenant("acme")) == DEFAULTS


def test_an_event_counts_for_the_tenant_and_its_account() -> None:
    assert counter_names("sent", "smtp1") == ["sent", "sent@smtp1"]
    assert counter_names("bounced", None) == ["bounced"]


def test_the_window_is_whole_hours_ending_with_the_current_one() -> None:
    now = 1_700_000_000 + 1234
    assert bucket_start(now) % HOUR == 0 and bucket_start(now) <= now < bucket_start(now) + HOUR
    assert window_start(now, 1) == bucket_start(now)
    assert window_start(now, 24) == bucket_start(now) - 23 * HOUR


def test_window_sums_the_tenant_and_each_account_and_drops_older_buckets() -> None:
    since = 10 * HOUR
    buckets = [
        {"bucket": 9 * HOUR, "sent": 1000, "bounced": 1000},  # before the window
        {"bucket": 10 * HOUR, "sent": 10, "bounced": 1, "sent@a": 6, "bounced@a": 1, "sent@b": 4},
        {"bucket": 11 * HOUR, "sent": 5, "complained": 2, "sent@b": 5, "complained@b": 2, "other": 7},
    ]
    counts = window_counts(buckets, since=since)
    assert counts.tenant == Counts(sent=15, bounced=1, complained=2)
    assert counts.accounts == {"a": Counts(6, 1, 0), "b": Counts(9, 0, 2)}


def test_a_resume_baseline_drops_earlier_hours_and_subtracts_its_own_hour() -> None:
    buckets = [
        {"bucket": 10 * HOUR, "sent": 10, "bounced": 5},
        {"bucket": 11 * HOUR, "sent": 12, "bounced": 6, "sent@a": 12, "bounced@a": 6},
        {"bucket": 12 * HOUR, "sent": 3},
    ]
    baseline = {"bucket": 11 * HOUR, "counts": {"sent": 10, "bounced": 6, "sent@a": 10, "bounced@a": 6}}
    counts = window_counts(buckets, since=10 * HOUR, baseline=baseline)
    assert counts.tenant == Counts(sent=5, bounced=0, complained=0)
    assert counts.accounts == {"a": Counts(2, 0, 0)}


def test_rates_of_nothing_sent_are_zero() -> None:
    assert Counts().bounce_rate == 0.0 and Counts(bounced=3).complaint_rate == 0.0
