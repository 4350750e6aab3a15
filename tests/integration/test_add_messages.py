"""``add-messages`` rules (DESIGN.md): per-message rejection, rejected-with-id stored as error, replace while
waiting, "already sent", duplicates, unknown accounts, deferral, priorities, and whose tenant a message is in."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

LANES = {0: "SendQueueImmediate", 1: "SendQueueHigh", 2: "SendQueueMedium", 3: "SendQueueLow"}
FAR_FUTURE = 4_000_000_000


@pytest.fixture
def acme(api: ApiClient) -> str:
    token = api.create_tenant("acme")
    api.create_account(token)
    return token


def add(api: ApiClient, token: str, *messages: dict[str, Any], **extra: Any) -> Any:
    resp = api.post("/commands/add-messages", token=token, body={"messages": list(messages), **extra})
    assert resp.status == 200, resp.text
    return resp.json


def state_item(stack: Stack, message_id: str, tenant: str = "acme") -> dict[str, Any] | None:
    resp = boto3.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"TENANT#{tenant}#MSG#{message_id}"}, "sk": {"S": "STATE"}})
    return resp.get("Item")


def message_items(stack: Stack, tenant: str = "acme") -> list[dict[str, Any]]:
    return [i for i in stack.raw_items() if i["pk"]["S"].startswith(f"TENANT#{tenant}#MSG#")]


def queued(stack: Stack) -> dict[int, list[str]]:
    """Message ids waiting in each priority lane (received once, not deleted)."""
    sqs = boto3.client("sqs")
    lanes: dict[int, list[str]] = {}
    for priority, logical_id in LANES.items():
        ids: list[str] = []
        while True:
            got = sqs.receive_message(QueueUrl=stack.queue_url(logical_id), MaxNumberOfMessages=10,
                                      VisibilityTimeout=60).get("Messages", [])
            if not got:
                break
            ids += [i for m in got for i in json.loads(m["Body"])["ids"]]
        lanes[priority] = ids
    return lanes


def all_queued(stack: Stack) -> list[str]:
    return sorted(i for ids in queued(stack).values() for i in ids)


# ------------------------------------------------------------------------------------------ accepted


def test_valid_messages_are_stored_pending_and_queued(api: ApiClient, acme: str, stack: Stack) -> None:
    assert add(api, acme, message("m1"), message("m2")) == {"ok": True, "queued": 2, "rejected": []}
    assert [api.get(f"/messages/{m}", token=acme).json["status"] for m in ("m1", "m2")] == ["pending", "pending"]
    assert all_queued(stack) == ["m1", "m2"]


def test_recipients_may_be_a_comma_separated_string(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1", to="a@example.com, B <b@example.org>"))
    assert api.get("/messages/m1", token=acme).json["message"]["to"] == ["a@example.com", "B <b@example.org>"]


def test_stored_message_keeps_the_submitted_fields(api: ApiClient, acme: str) -> None:
    submitted = message("m1", cc=["c@example.com"], headers={"X-Campaign": "spring"}, html_body="<p>Hi</p>",
                        batch_code="b1")
    add(api, acme, submitted)
    stored = api.get("/messages/m1", token=acme).json
    assert stored["batch_code"] == "b1"
    for key in ("from", "to", "cc", "subject", "body", "html_body", "headers", "batch_code"):
        assert stored["message"][key] == submitted[key]


def test_future_deferred_ts_is_stored_as_deferred_and_not_queued(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("later", deferred_ts=FAR_FUTURE))
    record = api.get("/messages/later", token=acme).json
    assert record["status"] == "deferred" and record["deferred_ts"] == FAR_FUTURE
    assert all_queued(stack) == []


def test_past_deferred_ts_is_pending_at_once(api: ApiClient, acme: str) -> None:
    add(api, acme, message("now", deferred_ts=1_000_000_000))
    assert api.get("/messages/now", token=acme).json["status"] == "pending"


@pytest.mark.parametrize(("priority", "number"), [("immediate", 0), ("high", 1), ("medium", 2), ("low", 3),
                                                  (0, 0), (3, 3)])
def test_priority_label_or_number_picks_the_lane(api: ApiClient, acme: str, stack: Stack, priority: Any,
                                                 number: int) -> None:
    add(api, acme, message("m1", priority=priority))
    assert api.get("/messages/m1", token=acme).json["priority"] == number
    assert queued(stack)[number] == ["m1"]


def test_message_without_priority_gets_the_default_priority(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1"), message("m2", priority="low"), default_priority="high")
    assert api.get("/messages/m1", token=acme).json["priority"] == 1
    assert api.get("/messages/m2", token=acme).json["priority"] == 3


def test_message_without_priority_or_default_is_medium(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1"))
    assert api.get("/messages/m1", token=acme).json["priority"] == 2


# ------------------------------------------------------------------------------------------ rejected


def test_invalid_message_is_rejected_with_a_reason_while_the_others_are_queued(api: ApiClient, acme: str,
                                                                               stack: Stack) -> None:
    answer = add(api, acme, message("good1"), message("bad", to=["not-an-address"]), message("good2"))
    assert answer["queued"] == 2
    assert answer["rejected"] == [{"id": "bad", "reason": "to: 'not-an-address' is not an e-mail address "
                                                          "(missing @)"}]
    assert all_queued(stack) == ["good1", "good2"]


def test_rejected_message_with_an_id_is_stored_as_error_with_reason_and_event(api: ApiClient, acme: str) -> None:
    answer = add(api, acme, message("bad", subject=""))
    reason = answer["rejected"][0]["reason"]
    record = api.get("/messages/bad", token=acme).json
    assert record["status"] == "error"
    assert reason in record["error"] and record["error_ts"]
    assert [(e["event_type"], reason in e["description"]) for e in record["history"]] == [("error", True)]


def test_rejected_message_is_never_queued(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("bad", subject=""))
    assert all_queued(stack) == []


@pytest.mark.parametrize("bad_id", [None, "", "x" * 129, "with space", "line\nbreak", 42])
def test_rejected_message_without_a_usable_id_is_not_stored(api: ApiClient, acme: str, stack: Stack,
                                                            bad_id: Any) -> None:
    raw = message("placeholder", subject="")
    if bad_id is None:
        del raw["id"]
    else:
        raw["id"] = bad_id
    answer = add(api, acme, raw)
    assert answer["queued"] == 0 and len(answer["rejected"]) == 1
    assert message_items(stack) == []


def test_unknown_account_is_rejected(api: ApiClient, acme: str) -> None:
    answer = add(api, acme, message("m1", account_id="nope"))
    assert answer["rejected"] == [{"id": "m1", "reason": "account 'nope' not found for tenant 'acme'"}]
    assert api.get("/messages/m1", token=acme).json["status"] == "error"


def test_account_of_another_tenant_is_unknown(api: ApiClient, acme: str) -> None:
    beta = api.create_tenant("beta")
    api.create_account(beta, "beta-smtp")
    answer = add(api, acme, message("m1", account_id="beta-smtp"))
    assert answer["queued"] == 0 and "not found" in answer["rejected"][0]["reason"]


def test_duplicate_ids_in_one_call_keep_the_first(api: ApiClient, acme: str, stack: Stack) -> None:
    answer = add(api, acme, message("dup", subject="first"), message("dup", subject="second"))
    assert answer["queued"] == 1
    assert answer["rejected"] == [{"id": "dup", "reason": "duplicate id in this call"}]
    assert api.get("/messages/dup", token=acme).json["message"]["subject"] == "first"
    assert all_queued(stack) == ["dup"]


def test_empty_message_list_queues_nothing(api: ApiClient, acme: str) -> None:
    assert add(api, acme) == {"ok": True, "queued": 0, "rejected": []}


# ------------------------------------------------------------------------------------------ resubmission


def test_resubmitting_a_waiting_message_replaces_it(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("m1", subject="old subject"))
    answer = add(api, acme, message("m1", subject="new subject"))
    assert answer == {"ok": True, "queued": 1, "rejected": []}
    listing = api.get("/messages", token=acme).json["messages"]
    assert [(m["id"], m["message"]["subject"]) for m in listing] == [("m1", "new subject")]
    assert sorted(i["sk"]["S"].split("#")[0] for i in message_items(stack)) == ["PAYLOAD", "STATE"]


def test_resubmitting_a_deferred_message_replaces_it(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1", deferred_ts=FAR_FUTURE))
    add(api, acme, message("m1", subject="now please"))
    record = api.get("/messages/m1", token=acme).json
    assert record["status"] == "pending" and record["message"]["subject"] == "now please"


def test_rejected_message_can_be_corrected_and_resubmitted(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1", to=["broken"]))
    answer = add(api, acme, message("m1"))
    assert answer["queued"] == 1
    record = api.get("/messages/m1", token=acme).json
    assert record["status"] == "pending" and record["error"] is None


def set_status(stack: Stack, message_id: str, status: str) -> None:
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key={"pk": {"S": f"TENANT#acme#MSG#{message_id}"}, "sk": {"S": "STATE"}},
        UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}})


def test_resubmitting_a_sent_message_is_rejected_already_sent(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("m1", subject="original"))
    set_status(stack, "m1", "sent")
    before = sorted(json.dumps(i, sort_keys=True) for i in message_items(stack))

    answer = add(api, acme, message("m1", subject="changed"))

    assert answer == {"ok": True, "queued": 0, "rejected": [{"id": "m1", "reason": "already sent"}]}
    assert sorted(json.dumps(i, sort_keys=True) for i in message_items(stack)) == before
    record = api.get("/messages/m1", token=acme).json
    assert record["status"] == "sent" and record["message"]["subject"] == "original"


def test_invalid_resubmission_of_a_sent_message_leaves_it_sent(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("m1"))
    set_status(stack, "m1", "sent")
    answer = add(api, acme, message("m1", to=["broken"]))
    assert answer["rejected"] == [{"id": "m1", "reason": "already sent"}]
    assert api.get("/messages/m1", token=acme).json["status"] == "sent"


def test_message_being_sent_is_not_replaced(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, message("m1", subject="original"))
    set_status(stack, "m1", "sending")
    answer = add(api, acme, message("m1", subject="changed"))
    assert answer["queued"] == 0 and answer["rejected"][0]["id"] == "m1"
    assert api.get("/messages/m1", token=acme).json["message"]["subject"] == "original"


# ------------------------------------------------------------------------------------------ tenants


def test_tenant_token_naming_another_tenant_in_a_message_is_403_and_nothing_stored(api: ApiClient, acme: str,
                                                                                   stack: Stack) -> None:
    beta = api.create_tenant("beta")
    api.create_account(beta)
    resp = api.post("/commands/add-messages", token=beta,
                    body={"messages": [message("mine"), message("theirs", tenant_id="acme")]})
    assert resp.status == 403 and "detail" in resp.json
    assert message_items(stack, "acme") == [] and message_items(stack, "beta") == []
    assert all_queued(stack) == []


def test_tenant_token_naming_its_own_tenant_in_a_message_is_accepted(api: ApiClient, acme: str) -> None:
    assert add(api, acme, message("m1", tenant_id="acme"))["queued"] == 1


def test_admin_token_without_tenant_id_rejects_every_message(api: ApiClient, acme: str, stack: Stack) -> None:
    answer = add(api, ADMIN_TOKEN, message("m1"), message("m2"))
    assert answer["queued"] == 0
    assert [r["reason"] for r in answer["rejected"]] == ["tenant_id is required with the admin token"] * 2
    assert message_items(stack) == []


def test_admin_token_with_tenant_id_in_the_query_adds_to_that_tenant(api: ApiClient, acme: str) -> None:
    resp = api.post("/commands/add-messages?tenant_id=acme", token=ADMIN_TOKEN, body={"messages": [message("m1")]})
    assert resp.json["queued"] == 1
    assert api.get("/messages/m1", token=acme).json["tenant_id"] == "acme"


def test_admin_token_with_tenant_id_per_message_adds_to_each_tenant(api: ApiClient, acme: str) -> None:
    beta = api.create_tenant("beta")
    api.create_account(beta)
    answer = add(api, ADMIN_TOKEN, message("a1", tenant_id="acme"), message("b1", tenant_id="beta"))
    assert answer["queued"] == 2
    assert api.get("/messages/a1", token=acme).status == 200
    assert api.get("/messages/b1", token=beta).status == 200
    assert api.get("/messages/a1", token=beta).status == 404


def test_admin_message_naming_another_tenant_than_the_query_is_rejected(api: ApiClient, acme: str,
                                                                        stack: Stack) -> None:
    api.create_tenant("beta")
    resp = api.post("/commands/add-messages?tenant_id=acme", token=ADMIN_TOKEN,
                    body={"messages": [message("b1", tenant_id="beta")]})
    assert resp.json["queued"] == 0 and "does not match" in resp.json["rejected"][0]["reason"]
    assert message_items(stack, "beta") == []


def test_message_for_an_unknown_tenant_is_rejected(api: ApiClient, acme: str) -> None:
    answer = add(api, ADMIN_TOKEN, message("g1", tenant_id="ghost"))
    assert answer["rejected"] == [{"id": "g1", "reason": "tenant 'ghost' not found"}]


def test_add_messages_is_in_the_command_log(api: ApiClient, acme: str) -> None:
    add(api, acme, message("m1"), message("bad", subject=""))
    entry = next(c for c in api.get("/command-log?tenant_id=acme", token=ADMIN_TOKEN).json["commands"]
                 if c["command"] == "add_messages")
    assert entry["payload"]["messages"] == {"count": 2, "ids": ["m1", "bad"]}
