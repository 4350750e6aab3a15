"""genro-mail-proxy's own report receiver (``FakeClient`` of its 0.7.0 test fixtures) works with this proxy.

Its bidirectional sync: on each delivery report it submits its next batch (``POST /messages/add_batch``) and
answers how many it still has queued; the proxy syncs again at once while that is positive. The receiver
runs in upstream's virtualenv; the test drives the sender and the report functions in-process between its
polls. Every message of the scenario must end with the report upstream's scenario expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.compat.upstream import Upstream, report_receiver, scenario
from tests.conftest import ADMIN_TOKEN, ApiClient
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer

MAX_ROUNDS = 40


def final_reports(reports: list[dict[str, Any]]) -> dict[str, str]:
    """Per message id, the outcome its reports tell, as upstream's receiver reads them (sent_ts / error_ts)."""
    outcome: dict[str, str] = {}
    for item in reports:
        if item.get("sent_ts"):
            outcome[item["id"]] = "sent"
        elif item.get("error_ts"):
            outcome[item["id"]] = "error"
    return outcome


@pytest.mark.parametrize("csv", ["scenario_07_multi_batch.csv", "scenario_06_invalid_addresses.csv"])
def test_upstream_report_receiver_pushes_its_batches_and_reads_every_outcome(
        upstream: Upstream, api: ApiClient, server: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness,
        tmp_path: Path, csv: str) -> None:
    token = api.create_tenant("acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="starttls", user=SMTP_USER,
                       password=SMTP_PASSWORD)
    with report_receiver(upstream, tmp_path, proxy_url=server, token=token, tenant_id="acme", account_id="smtp1",
                         csv=scenario(csv)) as (url, state):
        changed = api.put("/tenant/acme", token=ADMIN_TOKEN, body={"client_base_url": url, "client_sync_path": "/sync"})
        assert changed.status == 200, changed.text
        assert api.post("/commands/run-now", token=token).status == 200
        expected = state()["expected"]
        for _round in range(MAX_ROUNDS):
            delivery.report()
            delivery.drain()
            seen = state()
            if seen["pending"] == 0 and final_reports(seen["received_reports"]).keys() >= expected.keys():
                break
        seen = state()
    assert seen["pending"] == 0 and sorted(seen["submitted"]) == sorted(expected)
    assert final_reports(seen["received_reports"]) == expected
    sent = sorted(r for m in smtp.messages for r in m.rcpt_tos)
    assert len(sent) == len(set(sent)) == sum(1 for s in expected.values() if s == "sent")  # each sent once
