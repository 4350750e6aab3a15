"""Time in one place, so tests can move it (rate-limit windows, leases, deferred sends)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_offset_seconds = 0.0


def now() -> float:
    """Unix time in seconds, shifted by the test offset."""
    return time.time() + _offset_seconds


def now_ts() -> int:
    return int(now())


def now_datetime() -> datetime:
    return datetime.fromtimestamp(now(), UTC)


def now_iso() -> str:
    return datetime.fromtimestamp(now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def advance(seconds: float) -> None:
    """Move the clock forward (tests and the local stack's time travel only)."""
    global _offset_seconds
    _offset_seconds += seconds


def reset() -> None:
    global _offset_seconds
    _offset_seconds = 0.0
