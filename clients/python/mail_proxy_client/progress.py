"""What the command line shows on standard error while it works for more than a moment: a bar where the
count is known (a bulk send, a limited listing), a counter where it is not (``messages list --all``,
``send --wait``), and a line for each retry.

Only on a terminal: when standard error is piped or redirected, or ``--json`` was given, nothing is written,
so scripts and logs get the answer alone. The line is redrawn in place at most ten times a second.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
CLEAR_LINE = "\r\x1b[K"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class ProgressLine:
    """One status line on ``stream``; ``enabled`` False makes every method do nothing."""

    def __init__(self, stream: TextIO, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.enabled = enabled
        self._clock = clock
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._note = ""
        self._shown = ""
        self._drawn_at: float | None = None
        self._started = clock()

    def start(self, label: str, total: int | None = None) -> None:
        """Begins a new task: a bar if ``total`` is known, else a running count."""
        self._label, self._total, self._done, self._note = label, total, 0, ""
        self._started = self._clock()
        self._drawn_at = None
        self._draw(force=True)

    def update(self, done: int | None = None, *, note: str | None = None, force: bool = False) -> None:
        if done is not None:
            self._done = done
        if note is not None:
            self._note = note
        self._draw(force=force or (self._total is not None and self._done >= self._total))

    def advance(self, count: int = 1) -> None:
        self.update(self._done + count)

    def message(self, text: str) -> None:
        """A line of its own above the status line (a retry, a warning), then the status line again."""
        if not self.enabled:
            return
        self.stream.write(CLEAR_LINE + text + "\n")
        self._shown = ""
        self._draw(force=True)

    def finish(self) -> None:
        """Removes the status line, so the answer that follows starts on a clean line."""
        if self.enabled and self._shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
        self._shown, self._label = "", ""

    def render(self) -> str:
        """The status line as it is drawn (without the escape codes)."""
        elapsed = self._clock() - self._started
        if self._total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self._done // self._total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            percent = min(100, 100 * self._done // self._total)
            text = f"{self._label} [{bar}] {self._done:,}/{self._total:,} ({percent}%, {elapsed:.0f} s)"
        else:
            text = (f"{self._label}: {self._done:,}" if self._done else self._label) + f" ({elapsed:.0f} s)"
        if self._note:
            text += f": {self._note}"
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        return text if len(text) <= width else text[: width - 1] + "…"

    def _draw(self, *, force: bool) -> None:
        if not self.enabled or not self._label:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < REDRAW_SECONDS:
            return
        text = self.render()
        if text != self._shown:
            self.stream.write(CLEAR_LINE + text)
            self.stream.flush()
            self._shown = text
        self._drawn_at = now
