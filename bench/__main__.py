"""``python -m bench`` (``make bench``): issue 14's performance table, each figure with a same-run baseline.

The targets are docs/design.md's "Targets"; the output ends with one JSON line holding every figure.

Parts (``--only`` runs one; all run in this order by default):
- ``sender``: N messages (``--messages``, default 2000) stored through the real API path, queued in moto SQS
  (in this process), delivered by the real sender handler into a STARTTLS + AUTH sink in another process;
  messages per second of the delivery phase against plain smtplib over one connection to the same sink;
  AWS requests per message. Every message must arrive exactly once.
- ``cost``: the same path with every AWS request counted and DynamoDB capacity estimated from item sizes:
  USD per million messages at public on-demand prices (``bench/cost.py`` holds the price table).
- ``coldstart``: import time of each handler module in a fresh interpreter against a bare import of
  boto3 + pydantic + Powertools.
- ``layer``: the layer as ``sam build`` makes it (arm64, python3.12), unpacked, against a plain install.
- ``latency``: one immediate message at a time on an idle local stack, submit → SMTP sink, p50 and p95
  (``--latency-messages``, default 50).
- ``e2e``: N messages end to end over HTTP, ``make run`` against genro-mail-proxy, by
  ``shared/bench-peer/compare.sh`` (``bench/peer.py``).
- ``stack`` (only with ``--only stack``): the local stack alone end to end, in-process timers with
  ``--profile``.

A part that cannot run says why; its figures are null in the JSON line and the reason is under ``failures``.
``--profile`` adds a cProfile of the sender's delivery phase and times the stack's parts in ``stack``.
Everything is bounded in time: each loop by count and by seconds, the whole run by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

from bench.common import ROOT, load_average


def _git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _on_alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("the benchmark ran out of its --max-seconds")


PARTS = ("sender", "cost", "coldstart", "layer", "latency", "e2e")
# The headline figures: always in the JSON line, null when their part did not run or failed.
HEADLINE: dict[str, tuple[str, ...]] = {
    "e2e": ("e2e_over_peer", "e2e_msgs_per_s", "e2e_peer_msgs_per_s", "e2e_lost", "e2e_duplicates"),
    "sender": ("sender_over_smtplib", "sender_msgs_per_s", "smtplib_msgs_per_s", "aws_requests_per_message"),
    "cost": ("usd_per_million", "usd_per_million_api_batch_500", "dynamodb_wru_per_message"),
    "coldstart": ("coldstart_ratio_max", "coldstart_baseline_ms"),
    "layer": ("layer_mb", "layer_plain_mb"),
    "latency": ("submit_to_sink_p50_ms", "submit_to_sink_p95_ms", "submit_post_p50_ms", "smtplib_to_sink_p50_ms"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per run of sender, cost and e2e (default 2000)")
    parser.add_argument("--only", choices=[*PARTS, "stack"], help="run one part")
    parser.add_argument("--skip-e2e", action="store_true", help="leave out the comparison with genro-mail-proxy")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the sender's delivery phase; time the local stack's parts in stack")
    parser.add_argument("--repetitions", type=int, default=5, help="cold-start runs per module (default 5)")
    parser.add_argument("--latency-messages", type=int, default=50,
                        help="messages sent one at a time in latency (default 50)")
    parser.add_argument("--e2e-wait", type=float, default=180.0, help="seconds stack waits for every delivery")
    parser.add_argument("--max-seconds", type=float, default=2700.0, help="stop the whole run after this long")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.messages > 100_000:
        parser.error("--messages must be between 1 and 100000")
    if args.latency_messages < 1 or args.latency_messages > 1000:
        parser.error("--latency-messages must be between 1 and 1000")

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    previous_alarm = signal.alarm(int(args.max_seconds))  # an outer timer (pytest-timeout's) is put back below
    sections = [args.only] if args.only else [p for p in PARTS if not (args.skip_e2e and p == "e2e")]
    started = time.monotonic()
    revision = _git_revision()
    load_before = load_average()
    print(f"mail proxy benchmarks: {revision}, Python {platform.python_version()}, {platform.machine()}, "
          f"load {load_before}; parts: {', '.join(sections)}; {args.messages} messages")
    summary: dict[str, Any] = {key: None for keys in HEADLINE.values() for key in keys}
    failures: dict[str, str] = {}
    try:
        for section in sections:
            try:
                figures = _run(section, args)
            except (AssertionError, RuntimeError, TimeoutError, OSError) as error:
                failures[section] = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
                print(f"\n!! {section} FAILED: {error}", flush=True)
                if isinstance(error, TimeoutError) and "max-seconds" in str(error):
                    break
                continue
            problem = figures.pop("problem", None)
            if problem:
                failures[section] = problem
                print(f"\n!! {section}: {problem}", flush=True)
            summary.update(figures)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_alarm:
            signal.alarm(max(1, previous_alarm - int(time.monotonic() - started)))
    summary.update({"messages": args.messages, "revision": revision, "load_before": load_before,
                    "load_after": load_average(), "seconds": round(time.monotonic() - started, 1),
                    "failures": failures})
    print_table(summary, sections, failures)
    print()
    print(json.dumps(summary, separators=(",", ":"), default=str), flush=True)
    return 1 if failures else 0


def _run(section: str, args: argparse.Namespace) -> dict[str, Any]:
    if section == "sender":
        from bench.sender import run_sender

        return run_sender(args.messages, profile=args.profile)
    if section == "cost":
        from bench.cost import run_cost

        return run_cost(args.messages)
    if section == "coldstart":
        from bench.coldstart import run_coldstart

        return run_coldstart(args.repetitions)
    if section == "layer":
        from bench.layer import run_layer

        return run_layer()
    if section == "latency":
        from bench.latency import run_latency

        return run_latency(args.latency_messages)
    if section == "e2e":
        from bench.peer import run_e2e_vs_peer

        return run_e2e_vs_peer(args.messages)
    from bench.e2e import run_e2e

    return run_e2e(args.messages, wait_seconds=args.e2e_wait, profile=args.profile)


def _n(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table_rows(s: dict[str, Any], messages: int) -> list[tuple[str, str, str, str, str, bool | None]]:
    """(part, measure, figure, baseline from the same run, target, met) for each row of issue 14's table."""

    def met(value: Any, ok: bool) -> bool | None:
        return None if value is None else ok

    e2e, sender, usd = s["e2e_over_peer"], s["sender_over_smtplib"], s["usd_per_million"]
    cold, layer, p50 = s["coldstart_ratio_max"], s["layer_mb"], s["submit_to_sink_p50_ms"]
    clean = not s["e2e_lost"] and not s["e2e_duplicates"]
    return [
        ("e2e", f"end to end, {messages} messages over HTTP until at the sink",
         f"{_n(s['e2e_msgs_per_s'], '.1f')} msg/s = {_n(e2e, '.2f')}x (lost {s['e2e_lost']}, twice "
         f"{s['e2e_duplicates']})", f"genro-mail-proxy {_n(s['e2e_peer_msgs_per_s'], '.1f')} msg/s",
         ">= 2x, none lost, none twice", met(e2e, e2e is not None and e2e >= 2.0 and clean)),
        ("sender", "sender handler into a STARTTLS+AUTH sink",
         f"{_n(s['sender_msgs_per_s'], '.0f')} msg/s = {_n(sender, '.3f')}",
         f"smtplib, one connection {_n(s['smtplib_msgs_per_s'], '.0f')} msg/s", ">= 0.5",
         met(sender, sender is not None and sender >= 0.5)),
        ("cost", "AWS cost per million messages (10 a call, reports)",
         f"${_n(usd, '.2f')} ({_n(s['dynamodb_wru_per_message'], '.2f')} WRU/msg)",
         f"500 a call: ${_n(s['usd_per_million_api_batch_500'], '.2f')}", "<= $3",
         met(usd, usd is not None and usd <= 3.0)),
        ("coldstart", "cold-start import, worst handler / baseline", f"{_n(cold, '.2f')}x",
         f"import boto3, pydantic, powertools {_n(s['coldstart_baseline_ms'], '.0f')} ms", "<= 1.3x",
         met(cold, cold is not None and cold <= 1.3)),
        ("layer", "layer unpacked, arm64 / python3.12", f"{_n(layer, '.1f')} MB",
         f"requirements.txt installed plainly {_n(s['layer_plain_mb'], '.1f')} MB", "<= 20 MB",
         met(layer, layer is not None and layer <= 20.0)),
        ("latency", "one immediate message, submit -> sink, idle stack",
         f"p50 {_n(p50, '.0f')} ms, p95 {_n(s['submit_to_sink_p95_ms'], '.0f')} ms",
         f"POST answer {_n(s['submit_post_p50_ms'], '.0f')} ms, smtplib to the sink "
         f"{_n(s['smtplib_to_sink_p50_ms'], '.1f')} ms", "p50 <= 300 ms",
         met(p50, p50 is not None and p50 <= 300.0)),
    ]


def print_table(summary: dict[str, Any], sections: list[str], failures: dict[str, str]) -> None:
    rows = [row for row in table_rows(summary, summary["messages"]) if row[0] in sections]
    if not rows:
        return
    print("\n== Issue 14's table, this run (baselines measured in the same run)")
    print("| measure | figure | baseline | target | met |\n|---|---|---|---|---|")
    for part, measure, figure, baseline, target, met in rows:
        verdict = {True: "yes", False: "NO", None: f"not measured: {failures.get(part, 'no figure')}"}[met]
        print(f"| {measure} | {figure} | {baseline} | {target} | {verdict} |")
    if len(sections) > 1:
        print("(`make test` on a fresh clone, the table's last timing, is not run here: time it apart)")


if __name__ == "__main__":
    sys.exit(main())
