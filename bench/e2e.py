"""End to end through the local stack (docs/design.md "Targets"): ``python -m local`` in a subprocess on free
ports, N messages POSTed over HTTP in calls of 500, until every one is an ``.eml`` file in the stack's
SMTP sink; counted by ``X-Mail-Proxy-ID`` (none lost, none twice). The rate runs from the first POST to
the last file written.

With ``profile=True`` the stack runs under ``bench.stack_profile`` (the same stack, with every handler
invocation and every poll timed per thread), and where the time went is printed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import ACCOUNT_ID, ROOT, TENANT_ID, Deadline, bench_message, fmt, load_average, proxy_ids
from bench.sink import check_exactly_once, proxy_id
from local.dev_secrets import new_admin_token
from local.harness import RunningStack, _child_environment, _stop, _wait_ready

TARGET_MSGS_PER_S = 145.0
API_BATCH = 500


class Client:
    """One keep-alive HTTP connection to the stack's API."""

    def __init__(self, api_url: str) -> None:
        parts = urlsplit(api_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)

    def call(self, method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        self.connection.request(method, path, body=data,
                                headers={"Content-Type": "application/json", "X-API-Token": token})
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.connection.close()


@contextmanager
def started_stack(work_dir: Path, env: dict[str, str], module: str = "local",
                  stop_timeout: float = 30.0) -> Iterator[RunningStack]:
    """``local.harness.running_stack``, but able to run the stack under ``bench.stack_profile``."""
    state_dir, mail_dir, log_path = work_dir / "state", work_dir / "mail", work_dir / "stack.log"
    command = [sys.executable, "-m", module, "--port=0", "--smtp-port=0", f"--state-dir={state_dir}",
               f"--mail-dir={mail_dir}", f"--api-token={new_admin_token()}"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=_child_environment(env), stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        ready = _wait_ready(process, log_path, 90.0)
        yield RunningStack(api_url=ready["api"], admin_token=ready["token"], smtp_host=ready["host"],
                           smtp_port=int(ready["smtp"]), mail_dir=mail_dir, state_dir=state_dir,
                           log_path=log_path, process=process)
    finally:
        _stop(process, log_path, stop_timeout)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _received(stack: RunningStack) -> list[Path]:
    return list(stack.mail_dir.glob("*.eml"))


def run_e2e(messages: int, *, wait_seconds: float = 180.0, profile: bool = False) -> dict[str, Any]:
    print(f"\n== End to end through the local stack: {messages} messages over HTTP in calls of {API_BATCH}, "
          f"into its SMTP sink (load {load_average()})")
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    env = {"MAIL_PROXY_LOCAL_LOG_LEVEL": "WARNING", "POWERTOOLS_LOG_LEVEL": "WARNING", "GMP_LOG_LEVEL": "WARNING"}
    # The stack's handlers log one INFO line per message delivered; the file would only slow the disk.
    if profile:
        env["BENCH_STACK_PROFILE"] = str(work / "profile.json")
    launched = time.monotonic()
    with started_stack(work, env, module="bench.stack_profile" if profile else "local") as stack:
        ready = time.monotonic() - launched
        client = Client(stack.api_url)
        try:
            status, answer = client.call("POST", "/tenant", {"tenant_id": TENANT_ID, "name": "Benchmark"},
                                         stack.admin_token)
            if status != 201:
                raise RuntimeError(f"POST /tenant: {status} {answer}")
            token = answer["api_key"]
            status, answer = client.call("POST", "/account", {"id": ACCOUNT_ID, "host": stack.smtp_host,
                                                              "port": stack.smtp_port, "tls": "none"}, token)
            if status != 201:
                raise RuntimeError(f"POST /account: {status} {answer}")
            bodies = [{"messages": [bench_message(i) for i in range(first, min(first + API_BATCH, messages))]}
                      for first in range(0, messages, API_BATCH)]
            post_seconds: list[float] = []
            cpu_at_start = process_cpu_seconds(stack.process.pid)
            first_post = time.time()
            for body in bodies:
                started = time.perf_counter()
                status, answer = client.call("POST", "/commands/add-messages", body, token)
                post_seconds.append(time.perf_counter() - started)
                if status != 200 or answer.get("queued") != len(body["messages"]):
                    raise RuntimeError(f"add-messages: {status} {str(answer)[:300]}")
            posted = time.time()
        finally:
            client.close()
        deadline = Deadline(wait_seconds)
        files = _received(stack)
        while len(files) < messages and not deadline.expired:
            time.sleep(0.1)
            files = _received(stack)
        waited_out = len(files) < messages
        cpu_at_end = process_cpu_seconds(stack.process.pid)
        wall_at_end = time.time()
        time.sleep(0.5)  # anything arriving twice would arrive now
        files = _received(stack)
        last_delivery = max((f.stat().st_mtime for f in files), default=time.time())
        ids = Counter(proxy_id(f.read_bytes()) or "" for f in files)
        log_tail = stack.log_tail(40)
    stats = {"messages": len(files), "without_id": ids.pop("", 0), "ids": dict(ids)}
    elapsed = last_delivery - first_post
    rate = len(files) / elapsed if elapsed > 0 else None
    print(f"  stack ready in {ready:.1f} s; POST add-messages: " + ", ".join(f"{s:.2f}" for s in post_seconds)
          + f" s (all posted after {posted - first_post:.1f} s)")
    print(f"  {len(files)} of {messages} delivered, {len(ids)} distinct X-Mail-Proxy-ID, "
          f"first POST → last delivery {elapsed:.1f} s: {fmt(rate, '.0f')} msg/s "
          f"(target ≥ {TARGET_MSGS_PER_S:.0f}; {fmt((rate or 0) / TARGET_MSGS_PER_S)} of target)")
    cpu = cpu_at_end - cpu_at_start if cpu_at_start is not None and cpu_at_end is not None else None
    if cpu is not None:
        print(f"  the stack process used {cpu:.1f} s of CPU in those {wall_at_end - first_post:.1f} s "
              f"({cpu / (wall_at_end - first_post):.2f} of {os.cpu_count()} cores; moto, API, sender and pollers "
              f"share one interpreter): {1000 * cpu / max(len(files), 1):.1f} ms CPU per message")
    if profile:
        _print_stack_profile(work / "profile.json")
    if waited_out:
        print(log_tail)
    check_exactly_once(stats, proxy_ids(messages), "end to end")
    shutil.rmtree(work, ignore_errors=True)  # kept (mail, log) only when the run failed
    return {"e2e_msgs_per_s": round(rate, 1) if rate else None, "e2e_seconds": round(elapsed, 1),
            "e2e_delivered": len(files), "e2e_post_seconds": round(sum(post_seconds), 2),
            "e2e_cpu_ms_per_message": round(1000 * cpu / max(len(files), 1), 1) if cpu is not None else None}


def _print_stack_profile(path: Path) -> None:
    if not path.exists():
        print("  (no stack profile written)")
        return
    data = json.loads(path.read_text())
    print("  where the stack's time went (wall seconds per activity; threads overlap):")
    for name, entry in sorted(data["timers"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"    {name:40s} {entry['seconds']:8.2f} s  {entry['count']:6d} calls  "
              f"{1000 * entry['seconds'] / max(entry['count'], 1):7.1f} ms each")
    if data.get("profile"):
        print(data["profile"])
