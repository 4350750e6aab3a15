"""Shared bits of the benchmarks: paths, the machine's load, a byte-counting stream, ratios."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER_DIR = ROOT / "layers" / "mail_proxy"
FUNCTIONS_DIR = ROOT / "functions"

for _path in (str(LAYER_DIR), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# The benchmark message: a typical transactional e-mail (about 900 bytes rendered).
PAYLOAD: dict[str, Any] = {
    "from": "Shop <noreply@shop.example.com>",
    "to": ["Jo Smith <jo@example.com>"],
    "subject": "Your order has shipped",
    "body": "Hello Jo,\n\nyour order 12345 has shipped and will arrive on Thursday.\n" * 8,
}
TENANT_ID = "bench"
ACCOUNT_ID = "smtp1"


def message_id(index: int) -> str:
    return f"m{index:06d}"


def proxy_ids(count: int) -> set[str]:
    return {f"{TENANT_ID}/{message_id(i)}" for i in range(count)}


def bench_message(index: int) -> dict[str, Any]:
    return {"id": message_id(index), "account_id": ACCOUNT_ID, **PAYLOAD,
            "subject": f"Your order {index} has shipped"}


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


class CountingStream:
    """A write-only text stream that keeps only how much was written (log lines stand in for CloudWatch Logs)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8", "replace"))
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Deadline:
    """A time budget: ``left()`` seconds remain; ``expired`` once spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end
