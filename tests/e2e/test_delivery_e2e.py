"""A client's view, end to end: HTTP to the local stack, SMTP into its sink, secrets nowhere in sight."""

from __future__ import annotations

import email
import email.policy
import json
import time
from typing import Any

import pytest

from local.harness import RunningStack

pytestmark = pytest.mark.e2e


def wait_status(stack: RunningStack, token: str, mid: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = stack.request("GET", f"/messages/{mid}", token=token)
        record = dict(answer.json())
        if record.get("status") == status or time.monotonic() > deadline:
            assert record.get("status") == status, record
            return record
        time.sleep(0.1)


def test_submitted_messages_reach_the_smtp_sink_with_history(local_stack: RunningStack) -> None:
    created = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-shop", "name": "Shop"})
    assert created.status == 201, created.body
    token = created.json()["api_key"]
    account = {"id": "sink", "host": local_stack.smtp_host, "port": local_stack.smtp_port, "tls": "none",
               "user": "shop", "password": "e2e-smtp-password-xyz"}
    assert local_stack.request("POST", "/account", account, token=token).status == 201
    before = len(local_stack.mail_files())
    messages = [{"id": f"order-{i}", "account_id": "sink", "from": "Shop <shop@example.com>",
                 "to": [f"customer{i}@example.org"], "bcc": ["audit@example.com"],
                 "subject": f"Order {i} confirmed", "body": "Thank you!", "priority": "high"} for i in range(5)]
    answer = local_stack.request("POST", "/commands/add-messages", {"messages": messages}, token=token)
    assert answer.status == 200 and answer.json() == {"ok": True, "queued": 5, "rejected": []}

    files = local_stack.wait_for_mail(before + 5)
    delivered = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files[before:]]
    ids = sorted(str(m["X-Mail-Proxy-ID"]) for m in delivered)
    assert ids == [f"e2e-shop/order-{i}" for i in range(5)]
    assert all("audit@example.com" not in m.as_string() for m in delivered if "Bcc" in m)
    record = wait_status(local_stack, token, "order-3", "sent")
    assert record["history"][-1]["event_type"] == "sent"
    listing = local_stack.request("GET", "/messages?status=sent", token=token).json()
    assert {m["id"] for m in listing["messages"]} >= {f"order-{i}" for i in range(5)}
    assert "e2e-smtp-password-xyz" not in json.dumps(listing)
    assert "e2e-smtp-password-xyz" not in local_stack.log_text()
    assert token not in local_stack.log_text()


def test_a_rejected_message_is_stored_as_error_and_not_sent(local_stack: RunningStack) -> None:
    token = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-bad"}).json()["api_key"]
    account = {"id": "sink", "host": local_stack.smtp_host, "port": local_stack.smtp_port, "tls": "none"}
    assert local_stack.request("POST", "/account", account, token=token).status == 201
    bad = {"id": "broken", "account_id": "sink", "from": "shop@example.com", "to": ["nobody"],
           "subject": "x"}
    answer = local_stack.request("POST", "/commands/add-messages", {"messages": [bad]}, token=token).json()
    assert answer["queued"] == 0 and answer["rejected"][0]["id"] == "broken"
    record = local_stack.request("GET", "/messages/broken", token=token).json()
    assert record["status"] == "error" and "to" in record["error"]


def test_a_tenant_token_cannot_read_another_tenants_messages(local_stack: RunningStack) -> None:
    one = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-one"}).json()["api_key"]
    two = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-two"}).json()["api_key"]
    assert local_stack.request("GET", "/messages?tenant_id=e2e-one", token=two).status == 403
    assert local_stack.request("GET", "/tenants", token=one).status == 403
    assert local_stack.request("GET", "/tenants", token="not-a-token").status == 401
