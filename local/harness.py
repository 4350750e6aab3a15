"""Runs `python -m local` in a subprocess for tests, the way a developer runs it.

The stack binds port 0 for HTTP and SMTP and reports the ports it got on its `READY` line, so parallel runs
never race for a port. Output goes to a log file (never a pipe that could fill and block the stack), and
stopping sends SIGTERM and insists on a clean exit within the time limit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.dev_secrets import new_admin_token
from local.template import REPO_ROOT

READY_PATTERN = re.compile(r"^READY api=(?P<api>\S+) smtp=(?P<host>[^:\s]+):(?P<smtp>\d+) admin_token=(?P<token>\S+)$")


class StackFailed(AssertionError):
    """The stack did not start, or did not stop cleanly in time."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningStack:
    """A started stack: where to reach it and where its mail and log go."""

    api_url: str
    admin_token: str
    smtp_host: str
    smtp_port: int
    mail_dir: Path
    state_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mail_files(self) -> list[Path]:
        """Delivered messages, oldest first (sink file names start with the receive time)."""
        return sorted(self.mail_dir.glob("*.eml"))

    def wait_for_mail(self, count: int, timeout: float = 30.0) -> list[Path]:
        """Waits until at least `count` messages reached the sink; fails with the log tail if not."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.mail_files()
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(files) < count:
            raise AssertionError(f"{len(files)} of {count} messages arrived in {timeout:g} s\n{self.log_tail()}")
        return files

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        admin: bool = True,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpAnswer:
        """One HTTP call; JSON-encodes `body` unless it is bytes; sends the admin token unless `admin=False`
        or a `token` is given. Error statuses are returned, not raised."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)  # noqa: S310
        if data is not None and not isinstance(body, bytes):
            request.add_header("Content-Type", "application/json")
        chosen = token if token is not None else (self.admin_token if admin else None)
        if chosen is not None:
            request.add_header("X-API-Token", chosen)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
                return HttpAnswer(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, dict(error.headers.items()), error.read())


def _child_environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(os.environ)
    # The stack chooses its own AWS endpoint and credentials; an outer test's would only confuse it.
    for name in ("AWS_ENDPOINT_URL", "GMP_API_TOKEN", "MAIL_PROXY_ENCRYPTION_KEY"):
        environment.pop(name, None)
    for name in [name for name in environment if name.startswith("AWS_ENDPOINT_URL_")]:
        environment.pop(name)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra or {})
    return environment


@contextmanager
def running_stack(
    work_dir: Path,
    *,
    template: Path | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 90.0,
    stop_timeout: float = 15.0,
    verbose: bool = True,
) -> Iterator[RunningStack]:
    """Starts the stack on free ports with its state, mail and log under `work_dir`; stops it on exit.

    `verbose` (the default) logs every function's lines, so checks that no secret reaches the log read all
    of it; `verbose=False` is the quiet console a developer sees.

    Raises `StackFailed` if it is not ready within `ready_timeout`, or does not exit 0 within
    `stop_timeout` of SIGTERM.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    state_dir, mail_dir, log_path = work_dir / "state", work_dir / "mail", work_dir / "stack.log"
    command = [
        sys.executable,
        "-m",
        "local",
        "--port=0",
        "--smtp-port=0",
        f"--state-dir={state_dir}",
        f"--mail-dir={mail_dir}",
        f"--api-token={new_admin_token()}",
        *([f"--template={template}"] if template is not None else []),
        *(["--verbose"] if verbose else []),
        *args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            cwd=REPO_ROOT,
            env=_child_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = _wait_ready(process, log_path, ready_timeout)
        stack = RunningStack(
            api_url=ready["api"],
            admin_token=ready["token"],
            smtp_host=ready["host"],
            smtp_port=int(ready["smtp"]),
            mail_dir=mail_dir,
            state_dir=state_dir,
            log_path=log_path,
            process=process,
        )
        yield stack
    finally:
        _stop(process, log_path, stop_timeout)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            match = READY_PATTERN.match(line.strip())
            if match:
                return match.groupdict()
        if process.poll() is not None:
            raise StackFailed(f"local stack exited with {process.returncode} before READY:\n{text[-5000:]}")
        time.sleep(0.1)
    raise StackFailed(f"local stack not READY within {timeout:g} s:\n{log_path.read_text()[-5000:]}")


def _stop(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise StackFailed(f"local stack did not exit within {timeout:g} s of SIGTERM") from None
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise StackFailed(f"local stack exited with {code} after SIGTERM:\n{tail}")
