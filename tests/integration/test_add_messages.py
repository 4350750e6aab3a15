"""``add-messages`` rules (docs/design.md): per-message rejection, rejected-with-id stored as error, replace while
waiting, "already sent", duplicates, unknown accounts, deferral, priorities, and whose tenant a message is in.

The module shares one moto stack (see ``conftest.shared_stack``); each test has its own tenants.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_PREFIX, STATE_SK, message_pk, messages_gsi1pk
from mail_proxy.adapters.dynamodb.table import item_key
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

LANES = {0: "SendQueueImmediate", 1: "SendQueueHigh", 2: "SendQueueMedium", 3: "SendQueueLow"}
FAR_FUTURE = int(time.time()) + 20 * 86400  # within the 30-day bound on deferred_ts
_serial = itertools.count(1)


@dataclass
class Tenant:
    api: ApiClient
    stack: Stack
    id: str
    token: str

    def add(self, *messages: dict[str, Any], token: str | None = None, **extra: Any) -> Any:
        resp = self.api.post("/commands/add-messages", token=token or self.token,
                             body={"messages": list(messages), **extra})
        assert resp.status == 200, resp.text
        return resp.json

    def record(self, message_id: str) -> Any:
        resp = self.api.get(f"/messages/{message_id}", token=self.token)
        assert resp.status == 200, resp.text
        return resp.json

    def items(self) -> list[dict[str, Any]]:
        """Every item of this tenant's messages (read through the listing index, not a scan)."""
        ddb = boto3.client("dynamodb")
        keys = ddb.query(TableName=self.stack.table_name, IndexName="ByTenant",
                         KeyConditionExpression="gsi1pk = :p",
                         ExpressionAttributeValues={":p": {"S": messages_gsi1pk(self.id)}})["Items"]
        found = []
        for key in keys:
            found += ddb.query(TableName=self.stack.table_name, KeyConditionExpression="pk = :p",
                               ExpressionAttributeValues={":p": key["pk"]})["Items"]
        return found

    def snapshot(self) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in self.items())

    def queued(self) -> dict[int, list[str]]:
        """This tenant's message ids in each priority lane (records are consumed)."""
        sqs = boto3.client("sqs")
        lanes: dict[int, list[str]] = {}
        for priority, logical_id in LANES.items():
            url = self.stack.queue_url(logical_id)
            ids: list[str] = []
            while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for record in got:
                    body = json.loads(record["Body"])
                    if body["tenant_id"] == self.id:
                        ids += body["ids"]
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=record["ReceiptHandle"])
            lanes[priority] = ids
        return lanes

    def all_queued(self) -> list[str]:
        return sorted(i for ids in self.queued().values() for i in ids)

    def set_status(self, message_id: str, status: str) -> None:
        boto3.client("dynamodb").update_item(
            TableName=self.stack.table_name,
            Key=item_key(message_pk(self.id, message_id), STATE_SK),
            UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}})


def new_tenant(shared: tuple[Stack, ApiClient], name: str) -> Tenant:
    stack, api = shared
    tenant_id = f"{name}{next(_serial)}"
    token = api.create_tenant(tenant_id)
    api.create_account(token)
    return Tenant(api, stack, tenant_id, token)


@pytest.fixture
def acme(shared_stack: tuple[Stack, ApiClient]) -> Iterator[Tenant]:
    tenant = new_tenant(shared_stack, "acme")
    tenant.queued()  # start from empty lanes
    yield tenant


@pytest.fixture
def beta(shared_stack: tuple[Stack, ApiClient]) -> Tenant:
    return new_tenant(shared_stack, "beta")


# ------------------------------------------------------------------------------------------ accepted


def test_valid_messages_are_stored_pending_and_queued(acme: Tenant) -> None:
    assert acme.add(message("m1"), message("m2")) == {"ok": True, "queued": 2, "rejected": []}
    assert [acme.record(m)["status"] for m in ("m1", "m2")] == ["pending", "pending"]
    assert acme.all_queued() == ["m1", "m2"]


def test_recipients_may_be_a_comma_separated_string(acme: Tenant) -> None:
    acme.add(message("m1", to="a@example.com, B <b@example.org>"))
    assert acme.record("m1")["message"]["to"] == ["a@example.com", "B <b@example.org>"]


def test_stored_message_keeps_the_submitted_fields(acme: Tenant) -> None:
    submitted = message("m1", cc=["c@example.com"], headers={"X-Campaign": "spring"}, html_body="<p>Hi</p>",
                        batch_code="b1")
    acme.add(submitted)
    stored = acme.record("m1")
    assert stored["batch_code"] == "b1" and stored["tenant_id"] == acme.id
    for key in ("from", "to", "cc", "subject", "body", "html_body", "headers", "batch_code"):
        assert stored["message"][key] == submitted[key]


def test_future_deferred_ts_is_stored_as_deferred_and_not_queued(acme: Tenant) -> None:
    acme.add(message("later", deferred_ts=FAR_FUTURE))
    record = acme.record("later")
    assert record["status"] == "deferred" and record["deferred_ts"] == FAR_FUTURE
    assert acme.all_queued() == []


def test_past_deferred_ts_is_pending_at_once(acme: Tenant) -> None:
    acme.add(message("now", deferred_ts=1_000_000_000))
    assert acme.record("now")["status"] == "pending"
    assert acme.all_queued() == ["now"]


@pytest.mark.parametrize(("priority", "number"), [("immediate", 0), ("high", 1), ("medium", 2), ("low", 3),
                                                  (0, 0), (3, 3)])
def test_priority_label_or_number_picks_the_lane(acme: Tenant, priority: Any, number: int) -> None:
    acme.add(message("m1", priority=priority))
    assert acme.record("m1")["priority"] == number
    assert acme.queued()[number] == ["m1"]


def test_message_without_priority_gets_the_default_priority(acme: Tenant) -> None:
    acme.add(message("m1"), message("m2", priority="low"), default_priority="high")
    assert acme.record("m1")["priority"] == 1
    assert acme.record("m2")["priority"] == 3


def test_message_without_priority_or_default_is_medium(acme: Tenant) -> None:
    acme.add(message("m1"))
    assert acme.record("m1")["priority"] == 2


# ------------------------------------------------------------------------------------------ rejected


def test_invalid_message_is_rejected_with_a_reason_while_the_others_are_queued(acme: Tenant) -> None:
    answer = acme.add(message("good1"), message("bad", to=["not-an-address"]), message("good2"))
    assert answer["queued"] == 2
    assert answer["rejected"] == [{"id": "bad", "reason": "to: 'not-an-address' is not an e-mail address "
                                                          "(missing @)"}]
    assert acme.all_queued() == ["good1", "good2"]


def test_rejected_message_with_an_id_is_stored_as_error_with_reason_and_event(acme: Tenant) -> None:
    reason = acme.add(message("bad", subject=""))["rejected"][0]["reason"]
    record = acme.record("bad")
    assert record["status"] == "error"
    assert reason in record["error"] and record["error_ts"]
    assert [(e["event_type"], reason in e["description"]) for e in record["history"]] == [("error", True)]


def test_rejected_message_is_never_queued(acme: Tenant) -> None:
    acme.add(message("bad", subject=""))
    assert acme.all_queued() == []


@pytest.mark.parametrize("bad_id", [None, "", "x" * 129, "with space", "line\nbreak", 42])
def test_rejected_message_without_a_usable_id_is_not_stored(acme: Tenant, bad_id: Any) -> None:
    raw = message("placeholder", subject="")
    if bad_id is None:
        del raw["id"]
    else:
        raw["id"] = bad_id
    answer = acme.add(raw)
    assert answer["queued"] == 0 and len(answer["rejected"]) == 1
    assert acme.items() == []


def test_unknown_account_is_rejected(acme: Tenant) -> None:
    answer = acme.add(message("m1", account_id="nope"))
    assert answer["rejected"] == [{"id": "m1", "reason": f"account 'nope' not found for tenant '{acme.id}'"}]
    assert acme.record("m1")["status"] == "error"


def test_account_of_another_tenant_is_unknown(acme: Tenant, beta: Tenant) -> None:
    beta.api.create_account(beta.token, "beta-smtp")
    answer = acme.add(message("m1", account_id="beta-smtp"))
    assert answer["queued"] == 0 and "not found" in answer["rejected"][0]["reason"]


def test_duplicate_ids_in_one_call_keep_the_first(acme: Tenant) -> None:
    answer = acme.add(message("dup", subject="first"), message("dup", subject="second"))
    assert answer["queued"] == 1
    assert answer["rejected"] == [{"id": "dup", "reason": "duplicate id in this call"}]
    assert acme.record("dup")["message"]["subject"] == "first"
    assert acme.all_queued() == ["dup"]


def test_empty_message_list_queues_nothing(acme: Tenant) -> None:
    assert acme.add() == {"ok": True, "queued": 0, "rejected": []}


# ------------------------------------------------------------------------------------------ resubmission


def test_resubmitting_a_waiting_message_replaces_it(acme: Tenant) -> None:
    acme.add(message("m1", subject="old subject"))
    assert acme.add(message("m1", subject="new subject")) == {"ok": True, "queued": 1, "rejected": []}
    listing = acme.api.get("/messages", token=acme.token).json["messages"]
    assert [(m["id"], m["message"]["subject"]) for m in listing] == [("m1", "new subject")]
    kinds = sorted(PAYLOAD_PREFIX if i["sk"]["S"].startswith(PAYLOAD_PREFIX) else i["sk"]["S"] for i in acme.items())
    assert kinds == sorted([PAYLOAD_PREFIX, STATE_SK])  # one content version left, the replaced one gone


def test_resubmitting_a_deferred_message_replaces_it(acme: Tenant) -> None:
    acme.add(message("m1", deferred_ts=FAR_FUTURE))
    acme.add(message("m1", subject="now please"))
    record = acme.record("m1")
    assert record["status"] == "pending" and record["message"]["subject"] == "now please"


def test_rejected_message_can_be_corrected_and_resubmitted(acme: Tenant) -> None:
    acme.add(message("m1", to=["broken"]))
    assert acme.add(message("m1"))["queued"] == 1
    record = acme.record("m1")
    assert record["status"] == "pending" and record["error"] is None


def test_resubmitting_a_sent_message_is_rejected_already_sent(acme: Tenant) -> None:
    acme.add(message("m1", subject="original"))
    acme.set_status("m1", "sent")
    before = acme.snapshot()

    answer = acme.add(message("m1", subject="changed"))

    assert answer == {"ok": True, "queued": 0, "rejected": [{"id": "m1", "reason": "already sent"}]}
    assert acme.snapshot() == before
    record = acme.record("m1")
    assert record["status"] == "sent" and record["message"]["subject"] == "original"


def test_invalid_resubmission_of_a_sent_message_leaves_it_sent(acme: Tenant) -> None:
    acme.add(message("m1"))
    acme.set_status("m1", "sent")
    before = acme.snapshot()
    assert acme.add(message("m1", to=["broken"]))["rejected"] == [{"id": "m1", "reason": "already sent"}]
    assert acme.snapshot() == before


def test_message_being_sent_is_not_replaced(acme: Tenant) -> None:
    acme.add(message("m1", subject="original"))
    acme.set_status("m1", "sending")
    answer = acme.add(message("m1", subject="changed"))
    assert answer["queued"] == 0 and answer["rejected"][0]["id"] == "m1"
    assert acme.record("m1")["message"]["subject"] == "original"


# ------------------------------------------------------------------------------------------ tenants


def test_tenant_token_naming_another_tenant_in_a_message_is_403_and_nothing_stored(acme: Tenant,
                                                                                   beta: Tenant) -> None:
    resp = beta.api.post("/commands/add-messages", token=beta.token,
                         body={"messages": [message("mine"), message("theirs", tenant_id=acme.id)]})
    assert resp.status == 403 and "detail" in resp.json
    assert acme.items() == [] and beta.items() == []
    assert acme.all_queued() == []


def test_tenant_token_naming_its_own_tenant_in_a_message_is_accepted(acme: Tenant) -> None:
    assert acme.add(message("m1", tenant_id=acme.id))["queued"] == 1


def test_admin_token_without_tenant_id_rejects_every_message(acme: Tenant) -> None:
    answer = acme.add(message("m1"), message("m2"), token=ADMIN_TOKEN)
    assert answer["queued"] == 0
    assert [r["reason"] for r in answer["rejected"]] == ["tenant_id is required with the admin token"] * 2
    assert acme.items() == []


def test_admin_token_with_tenant_id_in_the_query_adds_to_that_tenant(acme: Tenant) -> None:
    resp = acme.api.post(f"/commands/add-messages?tenant_id={acme.id}", token=ADMIN_TOKEN,
                         body={"messages": [message("m1")]})
    assert resp.json["queued"] == 1
    assert acme.record("m1")["tenant_id"] == acme.id


def test_admin_token_with_tenant_id_per_message_adds_to_each_tenant(acme: Tenant, beta: Tenant) -> None:
    answer = acme.add(message("a1", tenant_id=acme.id), message("b1", tenant_id=beta.id), token=ADMIN_TOKEN)
    assert answer["queued"] == 2
    assert acme.record("a1")["tenant_id"] == acme.id
    assert beta.record("b1")["tenant_id"] == beta.id
    assert acme.api.get("/messages/a1", token=beta.token).status == 404


def test_admin_message_naming_another_tenant_than_the_query_is_rejected(acme: Tenant, beta: Tenant) -> None:
    resp = acme.api.post(f"/commands/add-messages?tenant_id={acme.id}", token=ADMIN_TOKEN,
                         body={"messages": [message("b1", tenant_id=beta.id)]})
    assert resp.json["queued"] == 0 and "does not match" in resp.json["rejected"][0]["reason"]
    assert beta.items() == []


def test_message_for_an_unknown_tenant_is_rejected(acme: Tenant) -> None:
    answer = acme.add(message("g1", tenant_id="ghost-tenant"), token=ADMIN_TOKEN)
    assert answer["rejected"] == [{"id": "g1", "reason": "tenant 'ghost-tenant' not found"}]


def test_add_messages_is_in_the_command_log(acme: Tenant) -> None:
    acme.add(message("m1"), message("bad", subject=""))
    log = acme.api.get(f"/command-log?tenant_id={acme.id}", token=ADMIN_TOKEN).json["commands"]
    entry = next(c for c in log if c["command"] == "add_messages")
    assert entry["payload"]["messages"] == {"count": 2, "ids": ["m1", "bad"]}
