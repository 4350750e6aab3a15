"""`python -m demo` (make demo) runs to its end within its time bound and shows each message's fate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.client.conftest import REPO

pytestmark = pytest.mark.e2e


def test_the_demo_shows_sent_deferred_and_rejected_messages_and_their_reports() -> None:
    done = subprocess.run([sys.executable, "-m", "demo", "--timeout", "90"], cwd=REPO, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=150)
    transcript = done.stdout + done.stderr
    assert done.returncode == 0, transcript
    for expected in ("welcome-1   sent", "invoice-1   sent", "reminder-1  deferred", "broken-1    error",
                     "attachment invoice.csv", "signature valid", "everything the demo started has stopped"):
        assert expected in done.stdout, transcript
