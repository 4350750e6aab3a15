"""End to end against genro-mail-proxy: ``shared/bench-peer/compare.sh N`` (outside this repository, beside
the project's checkout), which sets the peer up by itself and runs, back to back with the same workload,
genro-mail-proxy 0.7.0 with its result queue fixed and then this project's ``make run``: N messages over HTTP
in calls of 500 until every one reached a counting SMTP sink. Its stdout is one JSON line per run and a ratio
line; its progress goes to stderr, which is passed through.

The script is found through ``BENCH_PEER_DIR``, else as ``shared/bench-peer`` beside the checkout or any
folder above it. ``make run`` listens on ports chosen here (``MAIL_PROXY_PORT`` / ``MAIL_PROXY_SMTP_PORT``,
which the Makefile passes on), so a stack someone else runs on 8000 is left alone. The peer's
default-configuration run (which stalls after 1,000 deliveries, minutes long) is skipped:
``PEER_DEFAULT_N=0``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import ROOT, fmt, load_average

TARGET_RATIO = 2.0

# make hands a command line's variables (``make bench ARGS="--only e2e"``) to every make below it through these:
# compare.sh's own ``make run`` would take ARGS for the local stack's arguments
_MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def compare_environment(environ: Mapping[str, str], port: int, smtp_port: int) -> dict[str, str]:
    """compare.sh's environment: ours on free ports, the peer's default run skipped, no make state inherited."""
    env = {k: v for k, v in environ.items() if k not in _MAKE_VARIABLES}
    env.update({"PEER_DEFAULT_N": "0", "OURS_DIR": str(ROOT), "OURS_PORT": str(port), "MAIL_PROXY_PORT": str(port),
                "MAIL_PROXY_SMTP_PORT": str(smtp_port)})
    return env


def find_compare_script() -> Path | None:
    """``compare.sh`` from ``BENCH_PEER_DIR``, else ``shared/bench-peer`` in the checkout's parent or above."""
    configured = os.environ.get("BENCH_PEER_DIR")
    candidates = [Path(configured)] if configured else [p / "shared" / "bench-peer" for p in ROOT.parents]
    for folder in candidates:
        script = folder / "compare.sh"
        if script.is_file():
            return script
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(process: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def parse_compare_output(stdout: str) -> dict[str, Any]:
    """The figures in compare.sh's stdout: the peer-fixed and ours run lines and the ratio line.

    Returns ``e2e_over_peer`` (ours / peer msgs_per_s, None when either run gave no rate), both rates, our
    run's submit and total seconds, lost and duplicates, and ``problem`` when the ratio is missing."""
    runs: dict[str, dict[str, Any]] = {}
    ratio_line: dict[str, Any] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if "mode" in item:
            runs[str(item["mode"])] = item
        elif "ours_over_peer_fixed" in item:
            ratio_line = item
    ours, peer = runs.get("ours", {}), runs.get("peer-fixed", {})
    result: dict[str, Any] = {
        "e2e_over_peer": ratio_line.get("ours_over_peer_fixed"),
        "e2e_msgs_per_s": ours.get("msgs_per_s"),
        "e2e_peer_msgs_per_s": peer.get("msgs_per_s"),
        "e2e_submit_s": ours.get("submit_s"),
        "e2e_total_s": ours.get("total_s"),
        "e2e_lost": ours.get("lost"),
        "e2e_duplicates": ours.get("duplicates"),
        "e2e_peer_lost": peer.get("lost"),
    }
    if result["e2e_over_peer"] is None:
        reasons = [f"{mode}: {run['error']}" for mode, run in runs.items() if run.get("error")]
        result["problem"] = ratio_line.get("why_null") or "; ".join(reasons) or "compare.sh printed no ratio line"
    return result


def run_e2e_vs_peer(messages: int, *, time_limit: float = 1500.0) -> dict[str, Any]:
    script = find_compare_script()
    print(f"\n== End to end, {messages} messages over HTTP (calls of 500) until all reached an SMTP sink: this "
          f"project's `make run` against genro-mail-proxy 0.7.0, result queue fixed (load {load_average()})")
    if script is None:
        raise RuntimeError("shared/bench-peer/compare.sh not found beside the checkout; set BENCH_PEER_DIR")
    port, smtp_port = _free_port(), _free_port()
    env = compare_environment(os.environ, port, smtp_port)
    print(f"  {script} {messages} (progress below; the first run sets the peer up)", flush=True)
    # Its own process group: on a timeout (or --max-seconds) SIGTERM reaches compare.sh and what it started,
    # whose traps stop their servers; SIGKILL follows only if they do not exit.
    process = subprocess.Popen(["bash", str(script), str(messages)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=sys.stderr, text=True, start_new_session=True)
    try:
        stdout, _ = process.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired as error:
        _stop_group(process)
        raise RuntimeError(f"compare.sh took longer than {time_limit:g} s") from error
    except BaseException:
        _stop_group(process)
        raise
    result = parse_compare_output(stdout)
    print(f"  peer (result queue fixed): {fmt(result['e2e_peer_msgs_per_s'], '.1f')} msg/s; "
          f"ours: {fmt(result['e2e_msgs_per_s'], '.1f')} msg/s (submitting {fmt(result['e2e_submit_s'], '.1f')} s, "
          f"all delivered after {fmt(result['e2e_total_s'], '.1f')} s; lost {result['e2e_lost']}, "
          f"twice {result['e2e_duplicates']})")
    print(f"  ours / peer: {fmt(result['e2e_over_peer'])}x  (target ≥ {TARGET_RATIO:g}x, none lost, none twice)")
    if result.get("problem"):
        result["problem"] += f" (compare.sh exited {process.returncode})"
        print(f"  no ratio: {result['problem']}")
    elif result["e2e_lost"] or result["e2e_duplicates"]:
        result["problem"] = f"ours lost {result['e2e_lost']} and sent {result['e2e_duplicates']} twice"
    return result
