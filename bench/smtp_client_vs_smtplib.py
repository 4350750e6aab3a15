"""Messages per second on one connection: mail_proxy's SmtpConnection against plain smtplib.

Both send the same bytes into the same STARTTLS + AUTH aiosmtpd sink, run in its own process (the test
fixture's program mode). Runs alternate so that drift hits both alike; the best round of each counts.

    .venv/bin/python bench/smtp_client_vs_smtplib.py [-n 2000] [--rounds 3] [--pipelining]
"""

from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "mail_proxy"), str(ROOT)]

from mail_proxy.mail.mime import build_email, message_bytes  # noqa: E402
from mail_proxy.mail.mime_addresses import envelope_recipients, envelope_sender  # noqa: E402
from mail_proxy.mail.smtp_client import SmtpConnection  # noqa: E402
from mail_proxy.mail.smtp_settings import SmtpSettings  # noqa: E402
from mail_proxy.security.address_guard import AddressPolicy  # noqa: E402

SINK_ON_LOOPBACK = AddressPolicy(allow_loopback=True)  # the sink listens on 127.0.0.1

PAYLOAD: dict[str, Any] = {
    "from": "Shop <noreply@shop.example.com>",
    "to": ["Jo Smith <jo@example.com>"],
    "subject": "Your order 12345 has shipped",
    "body": "Hello Jo,\n\nyour order 12345 has shipped and will arrive on Thursday.\n" * 8,
}


def start_sink(pipelining: bool) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [sys.executable, "-m", "tests.fixtures.smtp_server", "--tls", "starttls", "--auth"]
    if pipelining:
        command.append("--pipelining")
    sink = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    return sink, json.loads(sink.stdout.readline())


def run_smtplib(sink: dict[str, Any], count: int, data: bytes) -> float:
    context = ssl.create_default_context(cafile=sink["ca_file"])
    with smtplib.SMTP(sink["host"], sink["port"], local_hostname="bench.local", timeout=20) as smtp:
        smtp.starttls(context=context)
        smtp.login(sink["user"], sink["password"])
        started = time.perf_counter()
        for _ in range(count):
            smtp.sendmail("noreply@shop.example.com", ["jo@example.com"], data)
        return count / (time.perf_counter() - started)


def run_connection(sink: dict[str, Any], count: int, data: bytes) -> float:
    settings = SmtpSettings(
        sink["host"], sink["port"], tls="starttls", user=sink["user"], password=sink["password"],
        ca_file=sink["ca_file"], local_hostname="bench.local", address_policy=SINK_ON_LOOPBACK,
    )  # fmt: skip
    with SmtpConnection(settings) as connection:
        started = time.perf_counter()
        for _ in range(count):
            connection.send("noreply@shop.example.com", ["jo@example.com"], data)
        return count / (time.perf_counter() - started)


def run_connection_with_mime(sink: dict[str, Any], count: int, data: bytes) -> float:
    """As ``run_connection``, building each message from the payload first (the sender's real work)."""
    settings = SmtpSettings(
        sink["host"], sink["port"], tls="starttls", user=sink["user"], password=sink["password"],
        ca_file=sink["ca_file"], local_hostname="bench.local", address_policy=SINK_ON_LOOPBACK,
    )  # fmt: skip
    with SmtpConnection(settings) as connection:
        started = time.perf_counter()
        for index in range(count):
            msg = build_email(PAYLOAD, tenant_id="bench", message_id=f"m{index}")
            connection.send(envelope_sender(PAYLOAD), envelope_recipients(PAYLOAD), message_bytes(msg))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelining", action="store_true", help="the sink advertises PIPELINING")
    args = parser.parse_args()
    data = message_bytes(build_email(PAYLOAD, tenant_id="bench", message_id="m0", now=datetime.now(UTC)))
    runs: dict[str, Callable[[dict[str, Any], int, bytes], float]] = {
        "smtplib.sendmail": run_smtplib,
        "SmtpConnection.send": run_connection,
        "build_email + SmtpConnection.send": run_connection_with_mime,
    }
    sink_process, sink = start_sink(args.pipelining)
    try:
        results: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                results[name].append(run(sink, args.count, data))
    finally:
        assert sink_process.stdin is not None
        sink_process.stdin.close()
        sink_process.wait(timeout=30)
    baseline = max(results["smtplib.sendmail"])
    print(f"{args.count} messages of {len(data)} bytes, one connection, STARTTLS + AUTH sink"
          f"{' with PIPELINING' if args.pipelining else ''}; best of {args.rounds} rounds:")  # fmt: skip
    for name, rates in results.items():
        rounds = ", ".join(f"{rate:.0f}" for rate in rates)
        print(f"  {name:36s} {max(rates):7.0f} msg/s  ({max(rates) / baseline:.2f}x smtplib; rounds: {rounds})")


if __name__ == "__main__":
    main()
