"""Reading and managing messages: listing (filters, pages, cursors), one with its history, delete, clean up,
suspend and activate batches, run now, and the admin's command log.

The module shares one moto stack (see ``conftest.shared_stack``); each test has its own tenants.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import STATE_SK, message_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

FAR_FUTURE = int(time.time()) + 20 * 86400  # within the 30-day bound on deferred_ts
SMTP_PASSWORD = "smtp-password-for-log-check-77"
_serial = itertools.count(1)


@dataclass
class Tenant:
    api: ApiClient
    stack: Stack
    id: str
    token: str

    def add(self, *messages: dict[str, Any]) -> Any:
        resp = self.api.post("/commands/add-messages", token=self.token, body={"messages": list(messages)})
        assert resp.status == 200, resp.text
        return resp.json

    def get(self, path: str) -> Any:
        return self.api.get(path, token=self.token)

    def post(self, path: str, body: Any = None) -> Any:
        return self.api.post(path, token=self.token, body=body)

    def ids(self, query: str = "") -> list[str]:
        resp = self.get("/messages" + query)
        assert resp.status == 200, resp.text
        return [m["id"] for m in resp.json["messages"]]

    def set_final(self, message_id: str, status: str, ts: int) -> None:
        field = "sent_ts" if status == "sent" else "error_ts"
        boto3.client("dynamodb").update_item(
            TableName=self.stack.table_name,
            Key=item_key(message_pk(self.id, message_id), STATE_SK),
            UpdateExpression=f"SET #s = :s, {field} = :t REMOVE due_pk, due_sk",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}, ":t": {"N": str(ts)}})

    def commands(self, query: str = "") -> list[dict[str, Any]]:
        resp = self.api.get("/command-log" + query, token=ADMIN_TOKEN)
        assert resp.status == 200, resp.text
        return list(resp.json["commands"])


def new_tenant(shared: tuple[Stack, ApiClient], name: str, **fields: Any) -> Tenant:
    stack, api = shared
    tenant_id = f"{name}{next(_serial)}"
    token = api.create_tenant(tenant_id, **fields)
    api.create_account(token, password=SMTP_PASSWORD)
    return Tenant(api, stack, tenant_id, token)


@pytest.fixture
def acme(shared_stack: tuple[Stack, ApiClient]) -> Tenant:
    return new_tenant(shared_stack, "acme")


@pytest.fixture
def beta(shared_stack: tuple[Stack, ApiClient]) -> Tenant:
    return new_tenant(shared_stack, "beta")


# ------------------------------------------------------------------------------------------ listing


def test_list_shows_the_tenants_messages_oldest_first(acme: Tenant) -> None:
    acme.add(message("m1"), message("m2"), message("m3"))
    resp = acme.get("/messages")
    assert [m["id"] for m in resp.json["messages"]] == ["m1", "m2", "m3"]
    assert resp.json["ok"] is True and resp.json["messages"][0]["message"]["subject"] == "Subject m1"


def test_list_filters_by_status(acme: Tenant) -> None:
    acme.add(message("p1"), message("bad", subject=""), message("later", deferred_ts=FAR_FUTURE))
    assert acme.ids("?status=error") == ["bad"]
    assert acme.ids("?status=deferred") == ["later"]
    assert acme.ids("?status=pending") == ["p1"]


def test_list_active_only_leaves_out_final_messages(acme: Tenant) -> None:
    acme.add(message("p1"), message("bad", subject=""), message("later", deferred_ts=FAR_FUTURE))
    assert acme.ids("?active_only=true") == ["p1", "later"]


def test_list_includes_history_only_when_asked(acme: Tenant) -> None:
    acme.add(message("bad", subject=""))
    without = acme.get("/messages").json["messages"][0]
    with_history = acme.get("/messages?include_history=true").json["messages"][0]
    assert without["history"] is None
    assert [e["event_type"] for e in with_history["history"]] == ["error"]


def test_list_pages_with_limit_and_cursor_cover_every_message_once(acme: Tenant) -> None:
    acme.add(*(message(f"m{i}") for i in range(7)))
    seen: list[str] = []
    cursor = None
    for _page in range(10):
        resp = acme.get("/messages?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        page = [m["id"] for m in resp.json["messages"]]
        assert len(page) <= 3
        seen += page
        cursor = resp.json["next_cursor"]
        if not cursor:
            break
    assert seen == [f"m{i}" for i in range(7)]


def test_cursor_of_one_tenant_is_refused_to_another(acme: Tenant, beta: Tenant) -> None:
    acme.add(message("m1"), message("m2", subject="acme-only subject"))
    cursor = acme.get("/messages?limit=1").json["next_cursor"]
    resp = beta.get(f"/messages?limit=1&cursor={cursor}")
    assert resp.status == 422 and "cursor" in resp.json["detail"]
    assert "acme-only" not in resp.text


@pytest.mark.parametrize("cursor", ["not-base64!", "e30=", "bnVsbA==", "W10="])
def test_malformed_cursor_is_422(acme: Tenant, cursor: str) -> None:
    resp = acme.get(f"/messages?cursor={cursor}")
    assert resp.status == 422 and "cursor" in resp.json["detail"]


# ------------------------------------------------------------------------------------------ one message


def test_get_message_shows_the_record_with_history(acme: Tenant) -> None:
    acme.add(message("m1", batch_code="b1", priority="high"))
    record = acme.get("/messages/m1").json
    assert record["id"] == "m1" and record["tenant_id"] == acme.id and record["account_id"] == "smtp1"
    assert record["priority"] == 1 and record["batch_code"] == "b1" and record["attempts"] == 0
    assert record["status"] == "pending" and record["history"] == []
    assert record["created_at"] and record["updated_at"]


def test_get_unknown_message_is_404(acme: Tenant) -> None:
    resp = acme.get("/messages/ghost")
    assert resp.status == 404 and "not found" in resp.json["detail"]


# ------------------------------------------------------------------------------------------ delete


def test_delete_messages_removes_them_and_lists_unknown_ids(acme: Tenant) -> None:
    acme.add(message("m1"), message("m2"))
    resp = acme.post("/commands/delete-messages", {"ids": ["m1", "ghost"]})
    assert resp.json == {"ok": True, "removed": 1, "not_found": ["ghost"], "unauthorized": [], "in_flight": []}
    assert acme.get("/messages/m1").status == 404
    left = boto3.client("dynamodb").query(
        TableName=acme.stack.table_name, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": message_pk(acme.id, "m1")}})["Items"]
    assert left == []
    assert acme.ids() == ["m2"]


def test_delete_messages_counts_a_repeated_id_once(acme: Tenant) -> None:
    acme.add(message("m1"))
    resp = acme.post("/commands/delete-messages", {"ids": ["m1", "m1"]})
    assert resp.json["removed"] == 1 and resp.json["not_found"] == []


# ------------------------------------------------------------------------------------------ cleanup


def test_cleanup_removes_final_messages_older_than_the_cutoff_and_keeps_waiting_ones(acme: Tenant) -> None:
    acme.add(message("old-sent"), message("old-error"), message("recent-sent"), message("waiting"))
    now = clock.now_ts()
    acme.set_final("old-sent", "sent", now - 7200)
    acme.set_final("old-error", "error", now - 7200)
    acme.set_final("recent-sent", "sent", now - 60)

    resp = acme.post("/commands/cleanup-messages", {"older_than_seconds": 3600})

    assert resp.json == {"ok": True, "removed": 2}
    assert acme.ids() == ["recent-sent", "waiting"]


def test_cleanup_without_a_cutoff_uses_the_retention_default(acme: Tenant) -> None:
    acme.add(message("week-old"), message("day-old"))
    now = clock.now_ts()
    acme.set_final("week-old", "sent", now - 8 * 24 * 3600)
    acme.set_final("day-old", "sent", now - 24 * 3600)
    assert acme.post("/commands/cleanup-messages", {}).json["removed"] == 1
    assert acme.ids() == ["day-old"]


def test_cleanup_keeps_final_messages_whose_report_is_still_owed(shared_stack: tuple[Stack, ApiClient],
                                                                 ) -> None:
    reported = new_tenant(shared_stack, "reported", client_base_url="https://app.example.com")
    reported.add(message("bad", subject=""))
    assert reported.post("/commands/cleanup-messages", {"older_than_seconds": 0}).json["removed"] == 0
    assert reported.get("/messages/bad").status == 200


# ------------------------------------------------------------------------------------------ batches


def test_suspend_all_batches_answers_with_the_suspension(acme: Tenant) -> None:
    resp = acme.post("/commands/suspend")
    assert resp.status == 200
    assert {k: v for k, v in resp.json.items() if k != "pending_messages"} == \
        {"ok": True, "tenant_id": acme.id, "batch_code": None, "suspended_batches": ["*"]}
    assert acme.get(f"/tenant/{acme.id}").json["suspended_batches"] == ["*"]


def test_suspend_one_batch_answers_with_that_batch(acme: Tenant) -> None:
    resp = acme.post("/commands/suspend?batch_code=b1")
    assert resp.json["suspended_batches"] == ["b1"] and resp.json["batch_code"] == "b1"


def test_suspend_all_counts_the_waiting_messages(acme: Tenant) -> None:
    acme.add(message("m1"), message("m2", batch_code="b1"), message("bad", subject=""),
             message("later", deferred_ts=FAR_FUTURE))
    assert acme.post("/commands/suspend").json["pending_messages"] == 3


def test_suspend_one_batch_counts_its_waiting_messages(acme: Tenant) -> None:
    acme.add(message("m1"), message("m2", batch_code="b1"), message("m3", batch_code="b1"))
    assert acme.post("/commands/suspend?batch_code=b1").json["pending_messages"] == 2


def test_suspend_counts_deferred_messages_as_waiting(acme: Tenant) -> None:
    acme.add(message("later", deferred_ts=FAR_FUTURE, batch_code="b1"), message("bad", subject=""))
    assert acme.post("/commands/suspend?batch_code=b1").json["pending_messages"] == 1


def test_activate_one_batch_lifts_only_that_batch(acme: Tenant) -> None:
    acme.post("/commands/suspend?batch_code=b1")
    acme.post("/commands/suspend?batch_code=b2")
    resp = acme.post("/commands/activate?batch_code=b1")
    assert resp.status == 200 and resp.json["suspended_batches"] == ["b2"]


def test_activate_all_clears_every_suspension(acme: Tenant) -> None:
    acme.post("/commands/suspend?batch_code=b1")
    acme.post("/commands/suspend")
    assert acme.post("/commands/activate").json["suspended_batches"] == []
    assert acme.get(f"/tenant/{acme.id}").json["suspended_batches"] == []


def test_activating_one_batch_while_all_are_suspended_is_409(acme: Tenant) -> None:
    acme.post("/commands/suspend")
    resp = acme.post("/commands/activate?batch_code=b1")
    assert resp.status == 409 and "detail" in resp.json
    assert acme.get(f"/tenant/{acme.id}").json["suspended_batches"] == ["*"]


def test_suspend_of_an_unknown_tenant_is_404(acme: Tenant) -> None:
    assert acme.api.post("/commands/suspend?tenant_id=ghost", token=ADMIN_TOKEN).status == 404


def test_run_now_answers_ok(acme: Tenant) -> None:
    acme.add(message("m1"))
    resp = acme.post("/commands/run-now")
    assert resp.status == 200 and resp.json == {"ok": True}


# ------------------------------------------------------------------------------------------ command log


def test_command_log_records_tenant_account_and_message_commands(acme: Tenant) -> None:
    acme.add(message("m1"))
    assert [c["command"] for c in acme.commands(f"?tenant_id={acme.id}")] == \
        ["add_messages", "add_account", "create_tenant"]


def test_command_log_without_a_tenant_shows_every_tenant(acme: Tenant, beta: Tenant) -> None:
    tenants = {c["tenant_id"] for c in acme.commands()}
    assert {acme.id, beta.id} <= tenants


def test_command_log_filters_by_tenant(acme: Tenant, beta: Tenant) -> None:
    acme_log = acme.commands(f"?tenant_id={acme.id}")
    assert acme_log and {c["tenant_id"] for c in acme_log} == {acme.id}
    assert beta.id not in json.dumps(acme_log)


def test_command_log_is_newest_first_and_honours_limit(acme: Tenant) -> None:
    acme.add(message("m1"))
    assert [c["command"] for c in acme.commands(f"?tenant_id={acme.id}&limit=2")] == ["add_messages", "add_account"]


def test_command_log_filters_by_time(acme: Tenant) -> None:
    now = clock.now_ts()
    assert acme.commands(f"?tenant_id={acme.id}&since_ts={now + 3600}") == []
    assert acme.commands(f"?tenant_id={acme.id}&until_ts={now - 3600}") == []
    assert len(acme.commands(f"?tenant_id={acme.id}&since_ts={now - 60}&until_ts={now + 60}")) == 2


def test_command_log_bounds_far_in_the_future_are_answered(acme: Tenant) -> None:
    assert acme.commands("?since_ts=99999999999999") == []
    assert len(acme.commands(f"?tenant_id={acme.id}&until_ts=99999999999999")) == 2


def test_command_log_payloads_hold_no_secret(shared_stack: tuple[Stack, ApiClient]) -> None:
    chosen = f"chosen-token-for-log-check-{next(_serial):04d}"
    acme = new_tenant(shared_stack, "logged", token=chosen)
    acme.api.put(f"/tenant/{acme.id}", token=acme.token,
                 body={"client_auth": {"method": "bearer", "token": "bearer-in-log-check"}})
    log = acme.commands(f"?tenant_id={acme.id}")
    text = json.dumps(log)
    for secret in (SMTP_PASSWORD, chosen, "bearer-in-log-check"):
        assert secret not in text
    created = next(c for c in log if c["command"] == "create_tenant")
    assert created["payload"]["token"] == "***"


def test_a_message_id_with_a_slash_is_reachable_percent_encoded(acme: Tenant) -> None:
    acme.add(message("order/17?x#y"))
    got = acme.get("/messages/order%2F17%3Fx%23y")
    assert got.status == 200 and got.json["id"] == "order/17?x#y"
