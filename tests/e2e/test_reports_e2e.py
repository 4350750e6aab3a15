"""Reports through the local stack: the stream feeds the router, the reporter POSTs to a real receiver."""

from __future__ import annotations

import time

import pytest

from local.harness import RunningStack
from mail_proxy.security.report_signing import verify
from tests.fixtures.receiver import ReportReceiver

pytestmark = pytest.mark.e2e


def test_delivery_reports_arrive_at_the_applications_url(local_stack: RunningStack) -> None:
    with ReportReceiver() as app:
        created = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-reports", "client_base_url": app.url,
                                                          "client_auth": {"method": "bearer", "token": "e2e-bt"}})
        assert created.status == 201, created.body
        token, secret = created.json()["api_key"], created.json()["signing_secret"]
        account = {"id": "sink", "host": local_stack.smtp_host, "port": local_stack.smtp_port, "tls": "none"}
        assert local_stack.request("POST", "/account", account, token=token).status == 201
        good = {"id": "r-ok", "account_id": "sink", "from": "a@example.com", "to": ["b@example.org"], "subject": "s"}
        bad = {**good, "id": "r-bad", "to": ["nobody"]}
        answer = local_stack.request("POST", "/commands/add-messages", {"messages": [good, bad]}, token=token)
        assert answer.status == 200

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {i["id"] for i in app.reports()} < {"r-ok", "r-bad"}:
            time.sleep(0.1)
        events = {i["id"]: i["event"] for i in app.reports()}
        assert events == {"r-ok": "sent", "r-bad": "error"}, local_stack.log_tail()
        assert all(c.headers["authorization"] == "Bearer e2e-bt" for c in app.calls)
        assert all(verify(c.headers["x-mail-proxy-signature"], c.body, secret) for c in app.calls)
