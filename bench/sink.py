"""The benchmarks' SMTP sink: the tests' STARTTLS + AUTH aiosmtpd server in its own process, plus a way to ask
it which messages it received.

    python -m bench.sink [--tls starttls] [--auth] [--max-seconds 900]

prints one JSON line (host, port, ca_file, user, password), then answers one JSON line per command read on
stdin: ``stats`` (messages received, connections, and how often each ``X-Mail-Proxy-ID`` arrived) and
``reset`` (forget what was received). It stops when stdin closes or after ``--max-seconds``. Headers are only
parsed when ``stats`` is asked, so counting costs the sink nothing while a benchmark runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROXY_ID = re.compile(rb"^X-Mail-Proxy-ID:[ \t]*(\S+)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def proxy_id(data: bytes) -> str | None:
    """The ``X-Mail-Proxy-ID`` header of a raw message (headers only), or None."""
    head = data.split(b"\r\n\r\n", 1)[0]
    match = PROXY_ID.search(head)
    return match.group(1).decode("utf-8", "replace") if match else None


def _stats(server: Any) -> dict[str, Any]:
    messages = server.messages
    ids = Counter(proxy_id(m.data) or "" for m in messages)
    return {"messages": len(messages), "connections": server.connections_opened, "without_id": ids.pop("", 0),
            "ids": dict(ids)}


def main(argv: list[str] | None = None) -> None:
    sys.path[:0] = [str(ROOT)]
    from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer

    parser = argparse.ArgumentParser(description="SMTP sink for the benchmarks")
    parser.add_argument("--tls", choices=["none", "starttls", "ssl"], default="starttls")
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    done = threading.Event()
    with ScriptedSmtpServer(tls=args.tls, auth=args.auth) as server:
        print(json.dumps({"host": server.host, "port": server.port, "ca_file": server.ca_file,
                          "user": SMTP_USER if args.auth else None,
                          "password": SMTP_PASSWORD if args.auth else None}), flush=True)

        def serve_commands() -> None:
            for line in sys.stdin:
                command = line.strip()
                if command == "stats":
                    answer: dict[str, Any] = _stats(server)
                elif command == "reset":
                    server.reset()
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown command {command!r}"}
                print(json.dumps(answer), flush=True)
            done.set()

        threading.Thread(target=serve_commands, daemon=True).start()
        done.wait(timeout=args.max_seconds)


class SinkProcess:
    """Starts ``python -m bench.sink`` and talks to it; ``with SinkProcess() as sink: sink.port ...``."""

    def __init__(self, *, tls: str = "starttls", auth: bool = True, max_seconds: float = 900.0) -> None:
        self.command = [sys.executable, "-m", "bench.sink", "--tls", tls, "--max-seconds", str(max_seconds)]
        if auth:
            self.command.append("--auth")
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> SinkProcess:
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self.info = json.loads(self._read_line())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return str(self.info["host"])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _read_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the SMTP sink exited (code {self.process.poll()})")
        return line

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._read_line())
        return answer

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")

    def reset(self) -> None:
        self.ask("reset")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        finally:
            if process.stdout is not None:
                process.stdout.close()


def check_exactly_once(stats: dict[str, Any], expected: set[str], label: str) -> None:
    """Fails loudly unless every expected id arrived exactly once and nothing else arrived."""
    ids: dict[str, int] = stats["ids"]
    missing = sorted(expected - set(ids))
    twice = sorted(i for i, n in ids.items() if n > 1)
    unexpected = sorted(set(ids) - expected)
    if missing or twice or unexpected or stats["without_id"]:
        raise AssertionError(
            f"{label}: {len(expected)} expected, {stats['messages']} received; missing {len(missing)} "
            f"{missing[:5]}, more than once {len(twice)} {twice[:5]}, unexpected {len(unexpected)} "
            f"{unexpected[:5]}, without X-Mail-Proxy-ID {stats['without_id']}")


if __name__ == "__main__":
    main()
