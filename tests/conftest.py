"""Shared fixtures: moto resources built from template.yaml, and an in-process HTTP API.

The in-process API goes through the same gateway emulation as the local stack (authorizer first, then
the api function with an HTTP API payload 2.0 event), so integration tests see what a client sees. The
building blocks live in tests/fixtures (`stack.py`: the moto stack; `api.py`: the client and the requests
tests repeat); their names are importable from here too.

The suite runs in parallel (pytest-xdist, `-n` in `make test`): every server a fixture starts binds port 0,
every temporary directory comes from `tmp_path`/`tempfile`, and each worker has its own moto state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.api import ApiClient, ApiResponse, load_function_module, message, record, submit
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer
from tests.fixtures.stack import (
    ADMIN_TOKEN,
    ENCRYPTION_KEY,
    FUNCTIONS,
    Stack,
    moto_stack,
    reset_caches,
    share_botocore_data,
    use_test_aws_environment,
)

__all__ = ["ADMIN_TOKEN", "ENCRYPTION_KEY", "FUNCTIONS", "ApiClient", "ApiResponse", "Stack", "load_function_module",
           "message", "record", "reset_caches", "submit"]

# -------------------------------------------------------------------------------------------------------
# Every AWS call a handler makes, in this process and in the local stacks the tests start, is recorded;
# tests/integration/test_iam_policies.py checks them against template.yaml after every other test.
# Under xdist the controller makes the log directory and every worker appends its calls there, so the
# check (run last, by one worker) also waits until the other workers have finished (`workers_done`).

AWS_CALLS_LAST = "test_iam_policies.py"
WORKER_DONE_PREFIX = "worker-done-"
_aws_calls: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    from local.aws_calls import CALL_LOG_ENV, CallRecorder, install

    share_botocore_data()  # botocore's JSON parsed once per process, not once per moto stack
    from local.moto_speedups import speed_up_moto

    speed_up_moto()  # moto as the local stack runs it
    given = getattr(config, "workerinput", {}).get("aws_call_log")  # an xdist worker: the controller's directory
    log_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="aws-calls-"))
    os.environ[CALL_LOG_ENV] = str(log_dir)  # local stacks started as subprocesses append their calls here
    recorder = CallRecorder(log_dir=log_dir) if given else CallRecorder()
    _aws_calls.update(recorder=install(recorder), log_dir=log_dir, deselected=False, owner=not given,
                      worker=os.environ.get("PYTEST_XDIST_WORKER"),
                      workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: each worker records into this run's directory."""
    node.workerinput["aws_call_log"] = str(_aws_calls["log_dir"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _aws_calls.get("worker") and _aws_calls.get("log_dir"):
        (_aws_calls["log_dir"] / f"{WORKER_DONE_PREFIX}{_aws_calls['worker']}").touch()


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    if _aws_calls.get("log_dir") and _aws_calls.get("owner"):
        shutil.rmtree(_aws_calls["log_dir"], ignore_errors=True)


def pytest_deselected(items: list[pytest.Item]) -> None:
    _aws_calls["deselected"] = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked ``slow`` first (pytest-xdist hands out whole modules in this order), and the check of
    recorded AWS calls after every test that records them."""
    items.sort(key=lambda item: (Path(str(item.fspath)).name == AWS_CALLS_LAST,
                                 item.get_closest_marker("slow") is None))


@pytest.fixture(scope="session")
def recorded_aws_calls() -> dict[str, Any]:
    """`recorder` (this process), `log_dir` (other processes' logs), `deselected` (a partial run)."""
    return _aws_calls
@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_aws_environment(monkeypatch)


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh moto stack for the test."""
    with moto_stack(monkeypatch) as built:
        yield built


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[tuple[Stack, ApiClient]]:
    """One moto stack (and API client) for the whole module: for modules whose tests each use their own
    tenants and message ids, or only read."""
    with pytest.MonkeyPatch.context() as mp, moto_stack(mp) as built:
        yield built, ApiClient()


@pytest.fixture
def api(stack: Stack) -> ApiClient:
    return ApiClient()


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    """A plain SMTP server on loopback that accepts everything (modules needing TLS or AUTH override it)."""
    with ScriptedSmtpServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[ReportReceiver]:
    """A tenant's application on loopback receiving delivery reports."""
    with ReportReceiver() as app:
        yield app
