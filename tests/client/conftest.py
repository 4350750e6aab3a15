"""Fixtures of the client tests: the session's local stack (shared with tests/e2e), the command line run as
a subprocess with its own ``MAIL_PROXY_HOME``, and a tenant with an account at the stack's SMTP sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tests.conftest
from local.harness import RunningStack
from tests.client.fake_api import FakeApi

if not hasattr(tests.conftest, "local_stack"):
    # The session's stack is defined for tests/e2e only; re-exported here it is a second fixture, so a run of
    # both directories starts two stacks (about two seconds). Defined in tests/conftest.py it would be one.
    from tests.e2e.conftest import local_stack  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CLIENT_SOURCE = REPO / "clients" / "python"
CLI_TIMEOUT_SECONDS = 90
# The connection variables of the command line: a test sets them itself, never inherits them.
CONNECTION_VARIABLES = ("MAIL_PROXY_URL", "MAIL_PROXY_TOKEN", "MAIL_PROXY_PROFILE")
if str(CLIENT_SOURCE) not in sys.path:  # in-process tests import this checkout's client, not an installed one
    sys.path.insert(0, str(CLIENT_SOURCE))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def client_environment(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a command-line run: its own profile directory, the client importable even
    without the editable install."""
    environment = {name: value for name, value in os.environ.items() if name not in CONNECTION_VARIABLES}
    environment["MAIL_PROXY_HOME"] = str(home)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_SOURCE), environment.get("PYTHONPATH")]))
    environment.update(extra)
    return environment


class Cli:
    """Runs ``python -m mail_proxy_client.cli`` the way a user runs ``mail-proxy``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = CLI_TIMEOUT_SECONDS,
                 env: dict[str, str] | None = None) -> CliResult:
        done = subprocess.run([sys.executable, "-m", "mail_proxy_client.cli", *args], input=stdin if stdin is not None
                              else "", capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=client_environment(self.home, **(env or {})))
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command line with an empty profile directory."""
    return Cli(tmp_path / "mail-proxy-home")


@pytest.fixture(scope="module")
def stack_cli(local_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The command line with a profile ``local`` holding the stack's URL and admin token."""
    runner = Cli(tmp_path_factory.mktemp("mail-proxy-home"))
    added = runner("profile", "add", "local", "--url", local_stack.api_url, f"--token={local_stack.admin_token}")
    assert added.code == 0, added.output
    return runner


def unique(prefix: str) -> str:
    """Tenant ids are shared by every test of the session's stack: each test makes its own."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class SinkTenant:
    tenant_id: str
    api_key: str
    account_id: str = "sink"


@pytest.fixture
def sink_tenant(local_stack: RunningStack) -> SinkTenant:
    """A new tenant with an account ``sink`` pointing at the stack's SMTP sink (no password)."""
    tenant_id = unique("cli")
    created = local_stack.request("POST", "/tenant", {"tenant_id": tenant_id})
    assert created.status == 201, created.body
    account = {"id": "sink", "host": local_stack.smtp_host, "port": local_stack.smtp_port, "tls": "none"}
    api_key = created.json()["api_key"]
    assert local_stack.request("POST", "/account", account, token=api_key).status == 201
    return SinkTenant(tenant_id, api_key)


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A scripted HTTP server on 127.0.0.1 standing in for the proxy; stopped after the test."""
    with FakeApi() as api:
        yield api
