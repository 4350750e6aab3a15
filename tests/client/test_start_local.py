"""`mail-proxy start local` and `stop local`: the repository's stack, in the foreground and detached, on free
ports (port 0) so they never collide with another stack."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mail_proxy_client.local_stack import is_stack_process

from tests.client.conftest import REPO, Cli, client_environment

pytestmark = pytest.mark.e2e


def test_in_the_foreground_it_saves_a_profile_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    command = [sys.executable, "-m", "mail_proxy_client.cli", "start", "local", "--port", "0", "--smtp-port", "0",
               "--state-dir", str(tmp_path / "state"), "--api-token", "fg-admin-token-0123456789", "--profile", "fg"]
    output = tmp_path / "out.txt"
    with output.open("w") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=client_environment(home), stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "Profile 'fg' saved" not in output.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, output.read_text()
            time.sleep(0.1)
        health = Cli(home)("fg", "status")
        assert health.code == 0, health.output + output.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, output.read_text()
    assert "local stack stopped" in output.read_text()


def test_in_the_background_it_runs_once_and_stop_ends_it(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    state = tmp_path / "state"
    start = ("start", "local", "--background", "--port", "0", "--smtp-port", "0", "--state-dir", str(state),
             "--profile", "bg")
    started = cli(*start)
    try:
        assert started.code == 0, started.output
        pid = json.loads((state / "stack.json").read_text())["pid"]
        assert is_stack_process(pid)
        assert cli("bg", "health").code == 0
        again = cli(*start)
        assert again.code == 2 and "already running" in again.stderr
    finally:
        stopped = cli("stop", "local", "--state-dir", str(state))
    assert stopped.code == 0, stopped.output
    assert not is_stack_process(pid) and not (state / "stack.json").exists()
