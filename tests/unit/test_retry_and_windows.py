"""The retry schedule and the sending windows as pure arithmetic (``domain.rate_limits``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.domain.entities import Account
from mail_proxy.domain.rate_limits import DEFAULT_RETRY_DELAYS, WINDOWS, RetryPolicy, Window, account_windows

# ------------------------------------------------------------------------------------------ retry and backoff


@settings(max_examples=200, deadline=None)
@given(delays=st.lists(st.integers(0, 100_000), min_size=1, max_size=8), attempt=st.integers(1, 8),
       jitter=st.sampled_from([0.0, 0.1, 0.5]))
def test_each_retry_waits_its_delay_within_the_jitter_and_at_least_a_second(
        delays: list[int], attempt: int, jitter: float) -> None:
    policy = RetryPolicy(tuple(delays), jitter=jitter)
    delay = policy.delay_after(attempt)
    if attempt > len(delays):
        assert delay is None
        return
    assert delay is not None
    base = delays[attempt - 1]
    assert max(1, round(base * (1 - jitter)) - 1) <= delay <= max(1, round(base * (1 + jitter)) + 1)


def test_the_attempt_after_the_last_delay_gives_up() -> None:
    policy = RetryPolicy((60, 300))

    assert policy.delay_after(2) is not None
    assert policy.delay_after(3) is None


def test_no_attempt_made_yet_has_no_backoff() -> None:
    assert RetryPolicy().delay_after(0) is None


def test_the_default_schedule_grows_from_a_minute_to_two_hours() -> None:
    policy = RetryPolicy(jitter=0.0)

    assert [policy.delay_after(n) for n in range(1, len(DEFAULT_RETRY_DELAYS) + 2)] == [
        60, 300, 900, 3600, 7200, None]


def test_a_retry_schedule_is_parsed_from_its_setting() -> None:
    assert RetryPolicy.parse("10, 20,30").delays == (10, 20, 30)
    assert RetryPolicy.parse(None) == RetryPolicy()


@pytest.mark.parametrize("text", [",", "-1,5", "ten"])
def test_a_bad_retry_schedule_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        RetryPolicy.parse(text)


# ------------------------------------------------------------------------------------------ windows


@settings(max_examples=200, deadline=None)
@given(now=st.floats(0, 4e9, allow_nan=False), window=st.sampled_from(WINDOWS))
def test_a_window_contains_now_and_the_next_starts_where_it_ends(now: float, window: tuple[str, int]) -> None:
    name, seconds = window
    w = Window(name, seconds, 10)

    assert w.start(now) <= now < w.next_start(now)
    assert w.next_start(now) - w.start(now) == seconds
    assert w.start(now) % seconds == 0
    assert w.start(w.next_start(now)) == w.next_start(now)


def test_an_account_is_limited_only_by_its_positive_limits_tightest_first() -> None:
    account = Account("main", "acme", "relay.example.org", 587, limit_per_minute=5, limit_per_hour=0,
                      limit_per_day=1000)
    windows = account_windows(account)

    assert [(w.name, w.seconds, w.limit) for w in windows] == [("minute", 60, 5), ("day", 86400, 1000)]


@pytest.mark.parametrize("limit", [None, 0, -3, "10", 2.5])
def test_a_missing_or_unusable_limit_is_no_limit(limit: object) -> None:
    assert account_windows(Account("main", "acme", "relay.example.org", 587, limit_per_hour=limit)) == []
