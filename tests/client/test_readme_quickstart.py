"""The README's quick start, run verbatim: the ```sh blocks between `<!-- quickstart:begin -->` and
`<!-- quickstart:end -->`, as one bash script (`set -e`), from the repository root, nothing substituted.

The commands use the stack's default ports (8000 and 2525), so the script runs in a network namespace of
its own (`unshare --net`, with only a loopback interface) where those ports are always free and nothing
else on the machine is disturbed. Where namespaces are not available it runs in the open if both ports are
free, and is skipped otherwise. HOME is a temporary directory, so `~/.mail-proxy` (profiles, the stack's
state and mail) is too. Whatever happens, the stack the script started is stopped by its recorded pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mail_proxy_client.local_stack import is_stack_process

from tests.client.conftest import REPO

pytestmark = pytest.mark.e2e

BEGIN, END = "<!-- quickstart:begin -->", "<!-- quickstart:end -->"
SCRIPT_TIMEOUT_SECONDS = 240


def quickstart_script() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1, "README.md must have one quick start section"
    section = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "the quick start has no ```sh block"
    return "\n".join(blocks)


def network_namespace() -> list[str] | None:
    """A command prefix that runs its command in a new network namespace with loopback up, if possible."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return None
    for flags in (["--net"], ["--net", "--map-root-user"]):
        probe = subprocess.run(["unshare", *flags, "--", "ip", "link", "set", "lo", "up"], capture_output=True,
                               timeout=20)
        if probe.returncode == 0:
            return ["unshare", *flags, "--", "sh", "-c", 'ip link set lo up && exec "$@"', "quickstart"]
    return None


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop_leftover_stack(home: Path) -> None:
    info = home / ".mail-proxy" / "local" / "stack.json"
    if not info.exists():
        return
    pid = int(json.loads(info.read_text())["pid"])
    if is_stack_process(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while is_stack_process(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_stack_process(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_readme_quick_start_runs_verbatim(tmp_path: Path) -> None:
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=REPO, capture_output=True).returncode != 0:
        pytest.skip(".venv is older than requirements-dev.txt: run `make venv` first (the quick start's first "
                    "line would install packages, which this test does not do)")
    prefix = network_namespace()
    if prefix is None and not (port_is_free(8000) and port_is_free(2525)):
        pytest.skip("no network namespace available and ports 8000/2525 are in use (is `make run` running?)")
    script = tmp_path / "quickstart.sh"
    script.write_text(quickstart_script(), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MAIL_PROXY_HOME", "MAIL_PROXY_REPO", "VIRTUAL_ENV", "PYTHONPATH")}
    environment["HOME"] = str(home)
    command = [*(prefix or []), "bash", "-e", "-o", "pipefail", "-x", str(script)]
    try:
        done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=SCRIPT_TIMEOUT_SECONDS)
    finally:
        stop_leftover_stack(home)
    transcript = f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, transcript
    assert "status" in done.stdout and re.search(r"^status\s+sent$", done.stdout, re.MULTILINE), transcript
    mail = list((home / ".mail-proxy" / "local" / "mail").glob("*.eml"))
    assert len(mail) == 1 and "Subject: Hello" in mail[0].read_text(), transcript
    assert "Local stack stopped" in done.stdout, transcript
