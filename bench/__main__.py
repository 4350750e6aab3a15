"""``python -m bench`` (``make bench``): the performance targets of docs/design.md, each against a baseline
measured in the same run, ending with one JSON line to compare runs over time.

Sections (``--only`` runs one):
- ``sender``: N messages (``--messages``, default 2000) stored through the real API path, queued in moto SQS
  (in this process), delivered by the real sender handler into a STARTTLS + AUTH sink in another process;
  messages per second of the delivery phase against plain smtplib over one connection to the same sink;
  AWS requests per message. Every message must arrive exactly once.
- ``cost``: the same path with every AWS request counted and DynamoDB capacity estimated from item sizes:
  USD per million messages at public on-demand prices (``bench/cost.py`` holds the price table).
- ``coldstart``: import time of each handler module in a fresh interpreter against a bare import of
  boto3 + pydantic + Powertools.
- ``e2e``: the local stack (``python -m local``) end to end over HTTP and SMTP on loopback.

``--profile`` adds a cProfile of the sender's delivery phase and runs the e2e stack with timers
(``bench/stack_profile.py``). Everything is bounded in time: each loop by count and by seconds, the whole
run by ``--max-seconds``.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--only", choices=["sender", "cost", "coldstart", "e2e"], help="run one section")
    parser.add_argument("--skip-e2e", action="store_true", help="do not start the local stack")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the sender's delivery phase; time the local stack's parts in e2e")
    parser.add_argument("--repetitions", type=int, default=5, help="cold-start runs per module (default 5)")
    parser.add_argument("--e2e-wait", type=float, default=180.0, help="seconds to wait for every delivery")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop the whole run after this long")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.messages > 100_000:
        parser.error("--messages must be between 1 and 100000")

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.max_seconds))
    sections = [args.only] if args.only else ["sender", "cost", "coldstart", *([] if args.skip_e2e else ["e2e"])]
    started = time.monotonic()
    revision = _git_revision()
    load_before = load_average()
    print(f"mail proxy benchmarks: {revision}, Python {platform.python_version()}, {platform.machine()}, "
          f"load {load_before}; sections: {', '.join(sections)}; {args.messages} messages")
    summary: dict[str, Any] = {
        "sender_msgs_per_s": None, "baseline_msgs_per_s": None, "ratio": None, "aws_requests_per_message": None,
        "usd_per_million_messages": None, "e2e_msgs_per_s": None, "cold_start_ratio_max": None,
    }
    failures: list[str] = []
    try:
        for section in sections:
            try:
                summary.update(_run(section, args))
            except (AssertionError, RuntimeError, TimeoutError, OSError) as error:
                failures.append(f"{section}: {error}")
                print(f"\n!! {section} FAILED: {error}", flush=True)
                if isinstance(error, TimeoutError) and "max-seconds" in str(error):
                    break
    finally:
        signal.alarm(0)
    summary.update({"messages": args.messages, "revision": revision, "load_before": load_before,
                    "load_after": load_average(), "seconds": round(time.monotonic() - started, 1),
                    "failures": failures})
    for key in ("sender_msgs_per_s", "baseline_msgs_per_s", "e2e_msgs_per_s"):
        if isinstance(summary.get(key), float):
            summary[key] = round(summary[key], 1)
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
    from bench.e2e import run_e2e

    return run_e2e(args.messages, wait_seconds=args.e2e_wait, profile=args.profile)


if __name__ == "__main__":
    sys.exit(main())
