"""Per-account sending windows (minute, hour, day) and the retry schedule: pure arithmetic, no I/O.

The counters themselves live in DynamoDB (see ``repository.reserve_sends``) so that a limit holds across
every concurrent sender, not per process as in genro-mail-proxy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from mail_proxy.domain.entities import Account

WINDOWS: tuple[tuple[str, int], ...] = (("minute", 60), ("hour", 3600), ("day", 86400))
DEFAULT_RETRY_DELAYS: tuple[int, ...] = (60, 300, 900, 3600, 7200)


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    limit: int

    def start(self, now: float) -> int:
        return int(now // self.seconds) * self.seconds

    def next_start(self, now: float) -> int:
        return self.start(now) + self.seconds


def account_windows(account: Account) -> list[Window]:
    """The windows an account is limited by; a missing, zero or negative limit means none."""
    windows = []
    for name, seconds in WINDOWS:
        limit = account.limit_per(name)
        if limit is not None and limit > 0:
            windows.append(Window(name, seconds, limit))
    return windows


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with jitter for temporary failures; the attempt after the last delay fails for good."""

    delays: Sequence[int] = DEFAULT_RETRY_DELAYS
    jitter: float = 0.1

    @classmethod
    def parse(cls, text: str | None) -> RetryPolicy:
        if not text:
            return cls()
        delays = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
        if not delays or any(d < 0 for d in delays):
            raise ValueError("retry delays must be a comma-separated list of non-negative seconds")
        return cls(delays)

    def delay_after(self, attempts_made: int) -> int | None:
        """Seconds to wait after ``attempts_made`` failed attempts, or None when it is time to give up."""
        if attempts_made < 1 or attempts_made > len(self.delays):
            return None
        base = self.delays[attempts_made - 1]
        spread = base * self.jitter
        return max(1, round(base + random.uniform(-spread, spread)))
