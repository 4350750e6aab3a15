"""The soak of issue 11, small: 300 messages through the local stack with the SMTP server answering
421/451/550 or dropping at seeded random and the application failing report syncs; nothing lost, nothing twice,
every final event acknowledged once. ``make soak`` runs the 10,000-message version (bench/soak.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import print_figures, run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(420)
def test_300_messages_under_smtp_and_report_faults_end_final_once_and_reported_once(tmp_path: Path) -> None:
    result = run_soak(300, seed=11, smtp_faults=0.15, app_faults=0.05, max_seconds=330.0, work_dir=tmp_path)
    print_figures(result)
    assert sum(result.smtp_faults.values()) > 0 and result.report_faults > 0, "no fault was injected"
    assert result.problems == []
    assert result.sent + result.errors == 300 and result.errors > 0
