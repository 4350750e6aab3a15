"""Latency of one immediate message on an idle local stack: ``POST /commands/add-messages`` with one message of
priority ``immediate`` until its ``.eml`` file is in the stack's SMTP sink, one message at a time.

The stack (``python -m local``, the same as ``make run``) runs in a subprocess on free ports. A few warm-up
messages go first (the first request of each handler pays its imports, as a Lambda cold start does) and are
shown apart. Then each measured message is sent only after the previous one arrived and the stack had a short
pause, so every message finds the stack idle. The time runs from just before the POST to the moment the sink
wrote the file (its modification time; both clocks are this machine's wall clock).

Baselines from the same run, to tell the stack's share from the floor: the POST's own round trip (the
answer comes before the delivery), and plain smtplib handing the same size of message to the same sink on
a new connection (what the SMTP part alone costs). Bounded by count, by a per-message wait and by a total.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import smtplib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import ACCOUNT_ID, PAYLOAD, TENANT_ID, Deadline, fmt, load_average
from bench.sink import proxy_id
from local.harness import RunningStack, running_stack

TARGET_P50_MS = 300.0
WARM_UP = 3
PAUSE_SECONDS = 0.3  # between messages: the previous message's stream and report work settles


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(len(ordered) * fraction)))
    return ordered[rank - 1]


class _Api:
    """One keep-alive HTTP connection to the stack (as a client library would hold)."""

    def __init__(self, api_url: str, token: str) -> None:
        parts = urlsplit(api_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        self.token = token

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        self.connection.request("POST", path, body=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json", "X-API-Token": self.token})
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.connection.close()


def _wait_for(stack: RunningStack, wanted: str, seen: set[Path], timeout: float) -> Path | None:
    """The first new ``.eml`` file whose X-Mail-Proxy-ID is ``wanted``, polled every 2 ms, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in stack.mail_dir.glob("*.eml"):
            if path in seen:
                continue
            seen.add(path)
            if proxy_id(path.read_bytes()) == wanted:
                return path
        time.sleep(0.002)
    return None


def _smtp_floor(stack: RunningStack, count: int) -> list[float]:
    """Plain smtplib: a new connection, one message of the benchmark's size, QUIT; milliseconds each."""
    data = (f"From: {PAYLOAD['from']}\r\nTo: {PAYLOAD['to'][0]}\r\nSubject: {PAYLOAD['subject']}\r\n\r\n"
            + PAYLOAD["body"].replace("\n", "\r\n")).encode()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with smtplib.SMTP(stack.smtp_host, stack.smtp_port, local_hostname="bench.local", timeout=10) as smtp:
            smtp.sendmail("noreply@shop.example.com", ["jo@example.com"], data)
        times.append(1000 * (time.perf_counter() - started))
    return times


def run_latency(messages: int = 50, *, per_message_seconds: float = 10.0, time_limit: float = 180.0,
                ready_timeout: float = 90.0) -> dict[str, Any]:
    """Submit → sink latency of ``messages`` immediate messages sent one at a time; figures in milliseconds."""
    print(f"\n== Latency, one immediate message at a time on an idle local stack: submit → SMTP sink, "
          f"{messages} messages after {WARM_UP} warm-up ones (load {load_average()})")
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {"MAIL_PROXY_LOCAL_LOG_LEVEL": "WARNING", "POWERTOOLS_LOG_LEVEL": "WARNING", "GMP_LOG_LEVEL": "WARNING"}
    deadline = Deadline(time_limit)
    latencies: list[float] = []
    warm: list[float] = []
    posts: list[float] = []
    missing: list[str] = []
    with running_stack(work, env=env, verbose=False, ready_timeout=ready_timeout) as stack:
        answer = stack.request("POST", "/tenant", {"tenant_id": TENANT_ID, "name": "Benchmark"})
        if answer.status != 201:
            raise RuntimeError(f"POST /tenant: {answer.status} {answer.body[:300]!r}")
        api = _Api(stack.api_url, answer.json()["api_key"])
        try:
            status, body = api.post("/account", {"id": ACCOUNT_ID, "host": stack.smtp_host,
                                                 "port": stack.smtp_port, "tls": "none"})
            if status != 201:
                raise RuntimeError(f"POST /account: {status} {body}")
            seen: set[Path] = set()
            for index in range(WARM_UP + messages):
                if deadline.expired:
                    break
                message_id = f"lat{index:04d}"
                message = {"id": message_id, "account_id": ACCOUNT_ID, "priority": "immediate", **PAYLOAD,
                           "subject": f"Latency probe {index}"}
                started_wall, started = time.time(), time.perf_counter()
                status, body = api.post("/commands/add-messages", {"messages": [message]})
                posted = time.perf_counter()
                if status != 200 or (body or {}).get("queued") != 1:
                    raise RuntimeError(f"add-messages: {status} {str(body)[:300]}")
                found = _wait_for(stack, f"{TENANT_ID}/{message_id}", seen,
                                  min(per_message_seconds, max(deadline.left(), 0.1)))
                if found is None:
                    missing.append(message_id)
                    continue
                elapsed = 1000 * max(found.stat().st_mtime - started_wall, 0.0)
                (warm if index < WARM_UP else latencies).append(elapsed)
                if index >= WARM_UP:
                    posts.append(1000 * (posted - started))
                time.sleep(PAUSE_SECONDS)
        finally:
            api.close()
        floor = _smtp_floor(stack, min(20, max(messages, 1))) if not deadline.expired else []
        log_tail = stack.log_tail(30) if missing else ""
    shutil.rmtree(work, ignore_errors=True)
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    print(f"  warm-up (cold handlers): {', '.join(f'{w:.0f}' for w in warm)} ms")
    print(f"  submit → sink over {len(latencies)} messages: p50 {fmt(p50, '.0f')} ms, p95 {fmt(p95, '.0f')} ms, "
          f"max {fmt(max(latencies, default=None), '.0f')} ms  (target p50 ≤ {TARGET_P50_MS:.0f} ms)")
    print(f"  baselines: the POST's own answer p50 {fmt(percentile(posts, 0.5), '.0f')} ms; plain smtplib into "
          f"the same sink on a new connection p50 {fmt(percentile(floor, 0.5), '.1f')} ms")
    if missing:
        print(f"  {len(missing)} message(s) did not arrive within {per_message_seconds:g} s: {missing[:5]}\n{log_tail}")
    if not latencies:
        raise RuntimeError("no message reached the sink" + (" before the time limit" if deadline.expired else ""))
    return {
        "submit_to_sink_p50_ms": round(p50, 1) if p50 is not None else None,
        "submit_to_sink_p95_ms": round(p95, 1) if p95 is not None else None,
        "submit_to_sink_max_ms": round(max(latencies), 1),
        "submit_to_sink_count": len(latencies),
        "submit_to_sink_missing": len(missing),
        "submit_post_p50_ms": _rounded(percentile(posts, 0.5)),
        "smtplib_to_sink_p50_ms": _rounded(percentile(floor, 0.5)),
        "submit_to_sink_mean_ms": round(statistics.fmean(latencies), 1),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
