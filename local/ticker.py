"""Invokes a function on its EventBridge schedule, with the event EventBridge would send.

The period comes from the template's `rate(...)` (or `MAIL_PROXY_LOCAL_SCHEDULE_SECONDS`). `request_tick()`
(a ticker's, or this module's for every running ticker) runs it at once, for in-process code that wants the
scheduler's work done now rather than within a minute.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from local.lambdas import LocalFunction
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION

log = logging.getLogger("local.ticker")

_running: set[ScheduleTicker] = set()
_running_lock = threading.Lock()


def request_tick() -> int:
    """Wakes every running ticker of this process; returns how many there were."""
    with _running_lock:
        tickers = list(_running)
    for ticker in tickers:
        ticker.request_tick()
    return len(tickers)


def scheduled_event(rule_name: str) -> dict[str, Any]:
    """The `Scheduled Event` EventBridge sends to a rule's target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": LOCAL_REGION,
        "resources": [f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


class ScheduleTicker:
    """Calls `function` every `period_seconds`, and whenever `wake` is set."""

    def __init__(
        self,
        function: LocalFunction,
        period_seconds: float,
        *,
        rule_name: str = "local-schedule",
        constant_input: Any | None = None,
    ) -> None:
        self.function = function
        self.period_seconds = period_seconds
        self.rule_name = rule_name
        self.constant_input = constant_input
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.ticks = 0
        self._thread: threading.Thread | None = None

    def request_tick(self) -> None:
        """Runs the function as soon as the current run (if any) ends."""
        self.wake.set()

    def start(self) -> None:
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._run, name=f"local-ticker-{self.rule_name}", daemon=True)
        self._thread.start()
        with _running_lock:
            _running.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        with _running_lock:
            _running.discard(self)
        self.stop_event.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        next_run = time.monotonic() + self.period_seconds
        while not self.stop_event.is_set():
            self.wake.wait(timeout=max(0.0, next_run - time.monotonic()))
            if self.stop_event.is_set():
                return
            self.wake.clear()
            next_run = time.monotonic() + self.period_seconds
            self.tick()

    def tick(self) -> None:
        """One invocation; a failure is logged, as EventBridge would only retry it."""
        event = self.constant_input if self.constant_input is not None else scheduled_event(self.rule_name)
        try:
            self.function.invoke(event)
        except Exception:
            log.exception("%s failed on its schedule", self.function.name)
        self.ticks += 1
