"""``mail-proxy start local`` / ``stop local``: the repository's local stack (``python -m local``).

The stack lives in the repository, not in this package, so it is found: ``--repo``, else
``$MAIL_PROXY_REPO``, else the repository this package was installed from (editable install), else the
current directory or one of its parents. Its state (development token and key), delivered mail and log go
to ``~/.mail-proxy/local/`` (``$MAIL_PROXY_HOME/local``) unless ``--state-dir`` says otherwise.

In the foreground it runs until Ctrl-C or SIGTERM. With ``--background`` it is started in its own session,
its ``READY`` line awaited (bounded), and its pid recorded in ``stack.json`` so ``stop local`` can end
exactly that process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mail_proxy_client.profiles import home_dir

REPO_VARIABLE = "MAIL_PROXY_REPO"
INFO_FILE = "stack.json"
LOG_FILE = "stack.log"
READY = re.compile(r"^READY api=(?P<api>\S+) smtp=(?P<smtp>\S+) admin_token=(?P<token>\S+)$")
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 20.0


class LocalStackError(RuntimeError):
    """The stack could not be found, started or stopped; ``usage`` when the user can fix the command."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class StackOptions:
    port: int = 8000
    smtp_port: int = 2525
    api_token: str | None = None
    state_dir: Path | None = None
    repo: Path | None = None

    @property
    def resolved_state_dir(self) -> Path:
        return (self.state_dir or home_dir() / "local").expanduser().resolve()


@dataclass(frozen=True)
class StackInfo:
    """What ``start --background`` leaves in ``stack.json``."""

    pid: int
    api_url: str
    smtp: str
    admin_token: str
    log: str
    mail_dir: str


def is_repository(path: Path) -> bool:
    return (path / "local" / "__main__.py").is_file() and (path / "template.yaml").is_file()


def find_repository(explicit: Path | None = None) -> Path:
    candidates: list[Path] = []
    if explicit is not None:
        if not is_repository(explicit):
            raise LocalStackError(f"{explicit} is not the mail-proxy repository (no local/ and template.yaml)",
                                  usage=True)
        return explicit.resolve()
    if os.environ.get(REPO_VARIABLE):
        candidates.append(Path(os.environ[REPO_VARIABLE]))
    candidates += list(Path(__file__).resolve().parents)
    cwd = Path.cwd().resolve()
    candidates += [cwd, *cwd.parents]
    for candidate in candidates:
        if is_repository(candidate):
            return candidate.resolve()
    raise LocalStackError(
        "cannot find the mail-proxy repository (the local stack lives there): run this from inside it, "
        f"give --repo PATH, or set {REPO_VARIABLE}", usage=True)


def stack_python(repo: Path) -> str:
    """The repository's virtualenv (it has the stack's dependencies) if there is one, else this Python."""
    venv = repo / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def stack_command(repo: Path, options: StackOptions) -> list[str]:
    state = options.resolved_state_dir
    command = [stack_python(repo), "-m", "local", f"--port={options.port}", f"--smtp-port={options.smtp_port}",
               f"--state-dir={state}", f"--mail-dir={state / 'mail'}"]
    if options.api_token:
        command.append(f"--api-token={options.api_token}")
    return command


def run_foreground(options: StackOptions, on_ready: Callable[[StackInfo], None] | None = None) -> int:
    """Runs the stack until it exits (Ctrl-C reaches it directly; SIGTERM sent to us is passed on)."""
    repo = find_repository(options.repo)
    state = options.resolved_state_dir
    state.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(stack_command(repo, options), cwd=repo, stdin=subprocess.DEVNULL,  # noqa: S603
                               stdout=subprocess.PIPE, text=True, bufsize=1)
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            match = READY.match(line.strip())
            if match and on_ready is not None:
                on_ready(StackInfo(process.pid, match["api"], match["smtp"], match["token"], "", str(state / "mail")))
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def start_background(options: StackOptions, *, timeout: float = READY_TIMEOUT_SECONDS) -> StackInfo:
    """Starts the stack detached from this terminal and returns once it is ready (or raises)."""
    repo = find_repository(options.repo)
    state = options.resolved_state_dir
    state.mkdir(parents=True, exist_ok=True)
    running = read_info(state)
    if running is not None and is_stack_process(running.pid):
        raise LocalStackError(f"a local stack is already running from {state} (pid {running.pid}, "
                              f"{running.api_url}); stop it with: mail-proxy stop local", usage=True)
    log_path = state / LOG_FILE
    with log_path.open("wb") as log:
        process = subprocess.Popen(stack_command(repo, options), cwd=repo, stdin=subprocess.DEVNULL,  # noqa: S603
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        match = next((m for m in map(READY.match, (ln.strip() for ln in text.splitlines())) if m), None)
        if match:
            info = StackInfo(process.pid, match["api"], match["smtp"], match["token"], str(log_path),
                             str(state / "mail"))
            (state / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
            os.chmod(state / INFO_FILE, 0o600)
            return info
        if process.poll() is not None:
            raise LocalStackError(f"the local stack exited with {process.returncode} before it was ready; "
                                  f"its log ({log_path}) ends:\n{_tail(text)}")
        if time.monotonic() > deadline:
            process.terminate()
            raise LocalStackError(f"the local stack was not ready within {timeout:g} s; see {log_path}")
        time.sleep(0.1)


def stop_background(state_dir: Path | None = None, *, timeout: float = STOP_TIMEOUT_SECONDS) -> StackInfo:
    """Sends SIGTERM to the stack recorded in ``stack.json`` and waits for it to exit."""
    state = StackOptions(state_dir=state_dir).resolved_state_dir
    info = read_info(state)
    if info is None or not is_stack_process(info.pid):
        (state / INFO_FILE).unlink(missing_ok=True)
        raise LocalStackError(f"no local stack is running from {state}", usage=True)
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_stack_process(info.pid):
        if time.monotonic() > deadline:
            raise LocalStackError(f"the local stack (pid {info.pid}) did not stop within {timeout:g} s")
        time.sleep(0.1)
    (state / INFO_FILE).unlink(missing_ok=True)
    return info


def read_info(state: Path) -> StackInfo | None:
    try:
        return StackInfo(**json.loads((state / INFO_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def is_stack_process(pid: int) -> bool:
    """True while ``pid`` is alive and is a local stack (a pid recycled by another program is not ours)."""
    proc = Path(f"/proc/{pid}")
    if proc.parent.is_dir():
        try:
            if (proc / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                return False  # exited, waiting for its parent to reap it
            return b"local" in (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])
