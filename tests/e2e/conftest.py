"""The local stack for end-to-end tests: `python -m local` in a subprocess, as a developer runs it.

`local_stack` is started once per session on free ports (the stack binds port 0 and reports what it got), with
its state, mail and log in a temporary directory, and stopped with SIGTERM at the end; the fixture fails if it
does not exit cleanly within 15 s. Tests share it, so each should use its own tenant ids.

For a stack with other options (say `--no-sender`, or a short schedule) use `local.harness.running_stack`
directly in a test or a module fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.harness import RunningStack, running_stack

STOP_TIMEOUT_SECONDS = 15.0
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory is an e2e test, so `-m "not e2e"` (make test-fast) leaves them out."""
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A running local stack: `api_url`, `admin_token`, `smtp_port`, `mail_dir` (where `.eml` files land),
    plus `request(...)`, `wait_for_mail(n)`, `mail_files()` and `log_text()` helpers."""
    with running_stack(tmp_path_factory.mktemp("local-stack"), stop_timeout=STOP_TIMEOUT_SECONDS) as stack:
        yield stack
