"""genro-mail-proxy 0.7.0 from the package index, in its own virtualenv, to run its client against this proxy.

The sdist is downloaded with pip and installed (with its declared dependencies, and httpx, which its client
imports but the package does not declare) into ``.cache/upstream-venv`` with the machine's python3.11; the
client itself (``tools/http_client``, not part of the built wheel) is run from the unpacked sdist. Built once
and reused, like any cached test dependency; a missing python3.11 or an unreachable package index skips the
tests that need it, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

UPSTREAM = "genro-mail-proxy"
VERSION = "0.7.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
VENV = CACHE / "upstream-venv"
READY = VENV / f".ready-{VERSION}"
SDIST_DIR = CACHE / "upstream-sdist"
SRC = CACHE / f"upstream-src/genro_mail_proxy-{VERSION}"
DRIVER = Path(__file__).resolve().parent / "upstream_driver.py"
RECEIVER = Path(__file__).resolve().parent / "upstream_receiver.py"
_NETWORK_HINTS = ("Could not find a version", "No matching distribution", "NewConnectionError",
                  "Max retries exceeded", "Temporary failure in name resolution", "Network is unreachable",
                  "ConnectionError", "timed out")


@dataclass(frozen=True)
class Upstream:
    python: Path
    src: Path


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def ensure_upstream() -> Upstream:
    """The cached virtualenv and unpacked sdist, built on first use; ``pytest.skip`` when impossible. Parallel
    test workers build it once: the others wait on a lock and find it ready."""
    if READY.exists() and SRC.exists():
        return Upstream(_python(VENV), SRC / "src")
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "upstream.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_upstream()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_upstream() -> Upstream:
    if READY.exists() and SRC.exists():
        return Upstream(_python(VENV), SRC / "src")
    base = shutil.which("python3.11")
    if base is None:
        pytest.skip("python3.11 is not installed: the genro-mail-proxy client test needs it")
    SDIST_DIR.mkdir(parents=True, exist_ok=True)
    sdists = sorted(SDIST_DIR.glob(f"genro_mail_proxy-{VERSION}.tar.gz"))
    if not sdists:
        got = _run([base, "-m", "pip", "download", f"{UPSTREAM}=={VERSION}", "--no-deps", "--no-binary", ":all:",
                    "-d", str(SDIST_DIR), "--disable-pip-version-check"], timeout=300)
        sdists = sorted(SDIST_DIR.glob(f"genro_mail_proxy-{VERSION}.tar.gz"))
        if got.returncode != 0 or not sdists:
            if any(hint in got.stderr for hint in _NETWORK_HINTS):
                pytest.skip(f"the package index cannot be reached to fetch {UPSTREAM}=={VERSION}: "
                            f"{got.stderr.strip().splitlines()[-1] if got.stderr.strip() else 'no answer'}")
            raise AssertionError(f"pip download {UPSTREAM}=={VERSION} failed:\n{got.stderr[-3000:]}")
    if VENV.exists():
        shutil.rmtree(VENV)
    made = _run([base, "-m", "venv", str(VENV)], timeout=300)
    assert made.returncode == 0, made.stderr
    installed = _run([str(_python(VENV)), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                      str(sdists[0]), "httpx"], timeout=900)
    if installed.returncode != 0:
        if any(hint in installed.stderr for hint in _NETWORK_HINTS):
            pytest.skip(f"the package index cannot be reached to install {UPSTREAM}'s dependencies")
        raise AssertionError(f"installing {UPSTREAM}=={VERSION} failed:\n{installed.stderr[-3000:]}")
    if SRC.exists():
        shutil.rmtree(SRC)
    with tarfile.open(sdists[0]) as archive:
        archive.extractall(SRC.parent, filter="data")
    READY.write_text(f"{UPSTREAM}=={VERSION}\n")
    return Upstream(_python(VENV), SRC / "src")


def _env(upstream: Upstream) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(upstream.src)
    env["HOME"] = str(CACHE)  # the client reads ~/.mail-proxy/connections.json; keep the user's out of it
    return env


def scenario(name: str) -> Path:
    """One of upstream's report scenarios (CSV of messages and their expected status)."""
    return SRC / "tests/fixtures/reporting" / name


@contextmanager
def report_receiver(upstream: Upstream, work: Path, *, proxy_url: str, token: str, tenant_id: str,
                    account_id: str, csv: Path, batch_size: int = 2, timeout: float = 120
                    ) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """Upstream's FakeClient serving on loopback: yields its base URL and a reader of what it received."""
    state, stop = work / "receiver-state.json", work / "receiver-stop"
    plan = {"fake_client": str(SRC / "tests/fixtures/reporting/fake_client.py"), "csv": str(csv),
            "proxy_url": proxy_url, "tenant_id": tenant_id, "account_id": account_id, "api_token": token,
            "batch_size": batch_size, "state_file": str(state), "stop_file": str(stop), "timeout": timeout}
    process = subprocess.Popen([str(upstream.python), str(RECEIVER), json.dumps(plan)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env(upstream))
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("READY "):
            process.kill()
            raise AssertionError(f"upstream's receiver did not start: {line}{process.communicate(timeout=10)[1]}")

        def read() -> dict[str, Any]:
            for _ in range(100):
                if state.exists():
                    data: dict[str, Any] = json.loads(state.read_text())
                    return data
                time.sleep(0.05)
            raise AssertionError("upstream's receiver wrote no state")

        yield line.split()[1], read
    finally:
        stop.touch()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run_client(upstream: Upstream, url: str, token: str | None, calls: list[tuple[str, list[Any], dict[str, Any]]],
               tenant_id: str | None = None, timeout: float = 120) -> list[dict[str, Any]]:
    """Runs ``calls`` with upstream's ``MailProxyClient`` in its own interpreter; returns one result per call."""
    plan = {"url": url, "token": token, "tenant_id": tenant_id, "calls": [list(c) for c in calls]}
    done = subprocess.run([str(upstream.python), str(DRIVER)], input=json.dumps(plan), capture_output=True,
                          text=True, timeout=timeout, env=_env(upstream), check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULTS "):
            results: list[dict[str, Any]] = json.loads(line.removeprefix("RESULTS "))
            return results
    raise AssertionError(f"the upstream client printed no results (exit {done.returncode}):\n{done.stderr[-3000:]}")


def main() -> int:
    """`python -m tests.compat.upstream`: build the cached virtualenv before the suite runs (`make test` does),
    so no test worker waits for it. Cannot be built here: the compat tests say why when they run."""
    try:
        upstream = ensure_upstream()
    except pytest.skip.Exception as skipped:
        print(f"genro-mail-proxy's client not set up: {skipped.msg}")
        return 0
    print(f"genro-mail-proxy {VERSION}'s client: {upstream.python}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
