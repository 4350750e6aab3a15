"""What a developer sees in the terminal of `make run`: a busy port is one line with the command that avoids
it, and a few minutes of use (requests, delivered mail, reports to the stand-in application and to an
unreachable one, scheduler ticks) stay at about one line each, without a traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.harness import RunningStack, running_stack
from local.template import REPO_ROOT

pytestmark = pytest.mark.slow

READY_LINE = "READY api="


def test_a_busy_port_prints_one_line_with_the_make_command_that_avoids_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        environment = {**os.environ, "MAIL_PROXY_LOCAL_VIA": "make", "MAIL_PROXY_PORT": str(port),
                       "MAIL_PROXY_SMTP_PORT": "0"}
        done = subprocess.run([sys.executable, "-m", "local", f"--state-dir={tmp_path}"], cwd=REPO_ROOT,
                              env=environment, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"HTTP API port {port} is in use" in line and "Traceback" not in line
    assert re.search(r"use other ports: make run PORT=\d+$", line), line


def eventually(probe, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def console_lines(stack: RunningStack) -> list[str]:
    """What the terminal showed after the banner."""
    text = stack.log_text()
    return [line for line in text.split(READY_LINE, 1)[1].splitlines()[1:] if line.strip()]


def create_tenant(stack: RunningStack, tenant_id: str, client_base_url: str) -> str:
    created = stack.request("POST", "/tenant", {"tenant_id": tenant_id, "name": tenant_id,
                                                "client_base_url": client_base_url})
    assert created.status == 201, created.body
    token = str(created.json()["api_key"])
    account = {"id": "sink", "host": "127.0.0.1", "port": stack.smtp_port, "tls": "none"}
    assert stack.request("POST", "/account", account, token=token).status == 201
    return token


def send(stack: RunningStack, token: str, message_id: str) -> None:
    message = {"id": message_id, "account_id": "sink", "from": "shop@example.com", "to": ["you@example.org"],
               "subject": "Hello", "body": "It works."}
    answer = stack.request("POST", "/commands/add-messages", {"messages": [message]}, token=token)
    assert answer.status == 200 and answer.json()["queued"] == 1, answer.body


def test_the_console_is_quiet_one_line_per_request_mail_and_report(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the unreachable application
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    environment = {"MAIL_PROXY_LOCAL_SCHEDULE_SECONDS": "0.5", "MAIL_PROXY_REPORT_BACKOFF_SECONDS": "1"}
    with running_stack(tmp_path, env=environment, verbose=False) as stack:
        ok_token = create_tenant(stack, "quiet-ok", f"{stack.api_url}/_local/app/quiet-ok")
        down_token = create_tenant(stack, "quiet-down", unreachable)
        send(stack, ok_token, "q-1")
        send(stack, down_token, "q-2")
        requests = 6
        for _ in range(4):
            assert stack.request("GET", "/health", admin=False).status == 200
            requests += 1
        stack.wait_for_mail(2)
        assert eventually(lambda: "REPORT to quiet-ok: q-1 sent" in stack.log_text()), stack.log_tail()
        assert eventually(lambda: "report not acknowledged" in stack.log_text()), stack.log_tail()
        received = stack.request("GET", "/_local/app", admin=False).json()["reports"]
        assert [item["id"] for report in received for item in report["delivery_report"]] == ["q-1"]
        time.sleep(3)  # a few scheduler and mailbox ticks, and the unreachable report's retries
        lines = console_lines(stack)
    text = "\n".join(lines)
    assert "Traceback" not in text, text
    assert not any(line.lstrip().startswith("{") for line in lines), text  # no JSON handler lines
    assert "scheduler tick" not in text and "mailboxes polled" not in text, text
    request_lines = [line for line in lines if re.search(r" (GET|POST) /\S* \d{3} \d+ms$", line)]
    assert len(request_lines) == requests, text
    # the unreachable application: a one-line warning per attempt (the handlers share one logger locally, so
    # its tenant_id may have been cleared by another function's invocation meanwhile)
    warnings = [line for line in lines if "WARNING Reporter: report not acknowledged" in line]
    assert warnings and all("Connection refused" in line for line in warnings), text
    # requests + 2 mails + 1 report + one warning per retry of the unreachable report + the stop line
    other = [line for line in lines if line not in request_lines and line not in warnings]
    assert len(other) <= 2 + 1 + 2, text
