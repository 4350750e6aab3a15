"""``Idempotency-Key`` on add-messages: a retried request returns the first answer, scoped to the tenant.

The module shares one moto stack (see ``conftest.shared_stack``); each test has its own tenants,
named ``acme<n>`` and ``beta<n>``, and its own idempotency keys.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb.keys import STATE_SK, message_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.adapters.send_queue import SendQueue
from mail_proxy.api.idempotency import canonical_body_hash
from mail_proxy.api.messages_api import AddMessagesRequest
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

_serial = itertools.count(1)
TENANTS: dict[str, str] = {}  # token -> tenant id, for the helpers below


def new_tenant(api: ApiClient, name: str) -> str:
    tenant_id = f"{name}{next(_serial)}"
    token = api.create_tenant(tenant_id)
    api.create_account(token)
    TENANTS[token] = tenant_id
    return token


@pytest.fixture
def api(shared_stack: tuple[Stack, ApiClient]) -> ApiClient:
    return shared_stack[1]


@pytest.fixture
def stack(shared_stack: tuple[Stack, ApiClient]) -> Stack:
    return shared_stack[0]


@pytest.fixture
def acme(api: ApiClient) -> str:
    return new_tenant(api, "acme")


@pytest.fixture
def beta(api: ApiClient) -> str:
    return new_tenant(api, "beta")


def add(api: ApiClient, token: str, key: str | None, *messages: dict[str, Any], query: str = "") -> Any:
    headers = {"Idempotency-Key": key} if key else None
    return api.post("/commands/add-messages" + query, token=token, body={"messages": list(messages)},
                    headers=headers)


def payload_versions(stack: Stack, token: str, message_id: str = "m1") -> list[str]:
    items = boto3.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": message_pk(TENANTS[token], message_id)}})["Items"]
    return sorted(i["sk"]["S"] for i in items)


def add_messages_logged(api: ApiClient, token: str) -> int:
    log = api.get(f"/command-log?tenant_id={TENANTS[token]}", token=ADMIN_TOKEN).json["commands"]
    return sum(1 for c in log if c["command"] == "add_messages")


def test_same_key_and_body_returns_the_first_answer_marked_replayed(api: ApiClient, acme: str) -> None:
    first = add(api, acme, "k-1", message("m1"), message("bad", to=[]))
    second = add(api, acme, "k-1", message("m1"), message("bad", to=[]))
    assert first.status == second.status == 200
    assert second.json == first.json == {"ok": True, "queued": 1, "rejected": [
        {"id": "bad", "reason": first.json["rejected"][0]["reason"]}]}
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"


def test_replayed_request_stores_the_messages_once(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, "k-1", message("m1"))
    stored = payload_versions(stack, acme)
    add(api, acme, "k-1", message("m1"))
    assert payload_versions(stack, acme) == stored
    assert add_messages_logged(api, acme) == 1


def test_without_a_key_a_repeat_is_processed_again(api: ApiClient, acme: str, stack: Stack) -> None:
    add(api, acme, None, message("m1"))
    stored = payload_versions(stack, acme)
    again = add(api, acme, None, message("m1"))
    assert "idempotent-replayed" not in again.headers
    assert payload_versions(stack, acme) != stored
    assert add_messages_logged(api, acme) == 2


def test_same_key_with_a_different_body_is_409_and_stores_nothing(api: ApiClient, acme: str) -> None:
    add(api, acme, "k-1", message("m1"))
    resp = add(api, acme, "k-1", message("m2"))
    assert resp.status == 409 and "different request body" in resp.json["detail"]
    assert api.get("/messages/m2", token=acme).status == 404


def test_same_key_from_two_tenants_is_independent(api: ApiClient, acme: str, beta: str) -> None:
    first = add(api, acme, "shared-key", message("m1", subject="acme's"))
    other = add(api, beta, "shared-key", message("m1", subject="beta's"))
    assert first.status == other.status == 200
    assert "idempotent-replayed" not in other.headers
    assert api.get("/messages/m1", token=beta).json["message"]["subject"] == "beta's"
    assert api.get("/messages/m1", token=acme).json["message"]["subject"] == "acme's"


def test_same_key_from_another_tenant_with_another_body_is_not_a_conflict(api: ApiClient, acme: str,
                                                                         beta: str) -> None:
    add(api, acme, "shared-key", message("a1"))
    resp = add(api, beta, "shared-key", message("b1"))
    assert resp.status == 200 and resp.json["queued"] == 1


def test_different_keys_are_different_requests(api: ApiClient, acme: str) -> None:
    add(api, acme, "k-1", message("m1"))
    resp = add(api, acme, "k-2", message("m1"))
    assert resp.status == 200 and "idempotent-replayed" not in resp.headers
    assert add_messages_logged(api, acme) == 2


def test_refused_request_is_not_remembered(api: ApiClient, acme: str) -> None:
    too_many = [message(f"n{i}") for i in range(1001)]
    assert add(api, acme, "k-1", *too_many).status == 422
    resp = add(api, acme, "k-1", message("m1"))
    assert resp.status == 200 and resp.json["queued"] == 1 and "idempotent-replayed" not in resp.headers


def test_admin_key_is_scoped_to_the_named_tenant(api: ApiClient, acme: str, beta: str) -> None:
    add(api, ADMIN_TOKEN, "admin-key", message("m1"), query=f"?tenant_id={TENANTS[acme]}")
    resp = add(api, ADMIN_TOKEN, "admin-key", message("m1"), query=f"?tenant_id={TENANTS[beta]}")
    assert resp.status == 200 and "idempotent-replayed" not in resp.headers
    assert api.get("/messages/m1", token=beta).status == 200


def test_key_longer_than_256_characters_is_422(api: ApiClient, acme: str) -> None:
    resp = add(api, acme, "k" * 257, message("m1"))
    assert resp.status == 422 and "detail" in resp.json
    assert api.get("/messages/m1", token=acme).status == 404


# --------------------------------------------------------------------------------------------- after a failure


def set_status(stack: Stack, token: str, message_id: str, status: str) -> None:
    """What the sender does to a stored message: claims it (``sending``) or records it ``sent``."""
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key=item_key(message_pk(TENANTS[token], message_id), STATE_SK),
        UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}})


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Make ``owner.name`` raise on its first call (after which it works again); returns the call count."""
    original = getattr(owner, name)
    calls: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


def test_command_log_failure_does_not_fail_a_stored_submission(api: ApiClient, acme: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fail_once(monkeypatch, MailRepository, "log_command")
    first = add(api, acme, "k-1", message("m1"))
    assert calls and first.status == 200 and first.json == {"ok": True, "queued": 1, "rejected": []}
    again = add(api, acme, "k-1", message("m1"))
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("status", ["sending", "sent"])
def test_retry_after_a_failure_past_storage_gets_the_first_answer_though_the_message_left(
        api: ApiClient, acme: str, stack: Stack, monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    fail_once(monkeypatch, SendQueue, "enqueue")
    assert add(api, acme, "k-1", message("m1"), message("bad", to=[])).status == 500
    set_status(stack, acme, "m1", status)  # meanwhile the scheduler queued it and the sender took it
    stored = payload_versions(stack, acme)
    retry = add(api, acme, "k-1", message("m1"), message("bad", to=[]))
    assert retry.status == 200 and "idempotent-replayed" not in retry.headers
    assert retry.json["queued"] == 1 and [r["id"] for r in retry.json["rejected"]] == ["bad"]
    assert payload_versions(stack, acme) == stored  # the message that left is not touched
    assert api.get("/messages/m1", token=acme).json["status"] == status
    replay = add(api, acme, "k-1", message("m1"), message("bad", to=[]))
    assert replay.json == retry.json and replay.headers["idempotent-replayed"] == "true"


def test_answer_that_cannot_be_remembered_is_still_given_and_the_key_released(
        api: ApiClient, acme: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    calls = fail_once(monkeypatch, DynamoDBPersistenceLayer, "_update_record")
    first = add(api, acme, "k-1", message("m1"))
    assert calls and first.status == 200 and first.json == {"ok": True, "queued": 1, "rejected": []}
    set_status(stack, acme, "m1", "sent")
    retry = add(api, acme, "k-1", message("m1"))
    assert retry.status == 200 and retry.json == first.json and "idempotent-replayed" not in retry.headers


def test_idempotency_store_down_before_the_submission_stores_nothing(
        api: ApiClient, acme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    fail_once(monkeypatch, DynamoDBPersistenceLayer, "_put_record")
    assert add(api, acme, "k-1", message("m1")).status == 500
    assert api.get("/messages/m1", token=acme).status == 404
    retry = add(api, acme, "k-1", message("m1"))
    assert retry.status == 200 and retry.json["queued"] == 1


# --------------------------------------------------------------------------------------------- same content


def test_same_body_with_keys_reordered_and_respaced_is_the_same_request(api: ApiClient, acme: str) -> None:
    first = api.post("/commands/add-messages", token=acme, headers={"Idempotency-Key": "k-1"},
                     raw_body=json.dumps({"messages": [message("m1")], "default_priority": 2}).encode())
    reordered = {"default_priority": 2, "messages": [dict(reversed(list(message("m1").items())))]}
    again = api.post("/commands/add-messages", token=acme, headers={"Idempotency-Key": "k-1"},
                     raw_body=json.dumps(reordered, indent=3).encode())
    assert first.status == again.status == 200
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"


def test_body_hash_ignores_key_order_but_not_message_order() -> None:
    one = AddMessagesRequest.model_validate({"messages": [{"a": 1, "b": 2}, {"c": 3}]})
    same = AddMessagesRequest.model_validate({"messages": [{"b": 2, "a": 1}, {"c": 3}]})
    swapped = AddMessagesRequest.model_validate({"messages": [{"c": 3}, {"a": 1, "b": 2}]})
    assert canonical_body_hash(one) == canonical_body_hash(same) != canonical_body_hash(swapped)


@pytest.mark.parametrize("status", ["sending", "sent"])
def test_resubmitting_the_accepted_message_without_a_key_is_queued_and_changes_nothing(
        api: ApiClient, acme: str, stack: Stack, status: str) -> None:
    add(api, acme, None, message("m1", subject="Hello"))
    set_status(stack, acme, "m1", status)
    stored = payload_versions(stack, acme)
    reordered = dict(reversed(list(message("m1", subject="Hello").items())))
    again = add(api, acme, None, reordered)
    assert again.json == {"ok": True, "queued": 1, "rejected": []}
    assert payload_versions(stack, acme) == stored


@pytest.mark.parametrize(("status", "reason"), [("sending", "message is being sent"), ("sent", "already sent")])
def test_resubmitting_other_content_under_an_id_that_left_is_still_refused(
        api: ApiClient, acme: str, stack: Stack, status: str, reason: str) -> None:
    add(api, acme, None, message("m1", subject="Hello"))
    set_status(stack, acme, "m1", status)
    for changed in (message("m1", subject="Changed"), message("m1", subject="Hello", priority=0)):
        again = add(api, acme, None, changed)
        assert again.json == {"ok": True, "queued": 0, "rejected": [{"id": "m1", "reason": reason}]}


@pytest.mark.parametrize("same", [True, False])
def test_resubmission_racing_a_claim_is_answered_by_what_is_stored(
        api: ApiClient, acme: str, stack: Stack, monkeypatch: pytest.MonkeyPatch, same: bool) -> None:
    add(api, acme, None, message("m1", subject="Hello"))
    set_status(stack, acme, "m1", "sending")
    original = MailRepository.get_states
    reads: list[int] = []

    def stale_first_read(self: MailRepository, tenant_id: str, ids: Any) -> dict[str, dict[str, Any]]:
        reads.append(1)
        return {} if len(reads) == 1 else original(self, tenant_id, ids)  # read before the claim

    monkeypatch.setattr(MailRepository, "get_states", stale_first_read)
    again = add(api, acme, None, message("m1", subject="Hello" if same else "Changed"))
    expected = [] if same else [{"id": "m1", "reason": "message is being sent"}]
    assert again.json == {"ok": True, "queued": int(same), "rejected": expected}
    assert api.get("/messages/m1", token=acme).json["message"]["subject"] == "Hello"


class Killed(BaseException):
    """The function stopped mid-call (a Lambda timeout): nothing after this point runs, nothing is cleaned up."""


def test_retry_after_the_function_died_mid_call_gets_the_first_answer_once_the_call_timed_out(
        api: ApiClient, acme: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*_args: Any, **_kwargs: Any) -> Any:
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(SendQueue, "enqueue", killed)  # after the messages were stored
        with pytest.raises(Killed):
            add(api, acme, "k-dies", message("m1"))
    set_status(stack, acme, "m1", "sent")
    assert add(api, acme, "k-dies", message("m1")).status == 429  # the first call may still be running
    ddb = boto3.client("dynamodb")
    table = stack.env["IDEMPOTENCY_TABLE_NAME"]
    [record] = [i for i in ddb.scan(TableName=table)["Items"] if i.get("status", {}).get("S") == "INPROGRESS"]
    ddb.update_item(TableName=table, Key={"id": record["id"]}, UpdateExpression="SET in_progress_expiration = :t",
                    ExpressionAttributeValues={":t": {"N": "1"}})  # the function's timeout has passed
    retry = add(api, acme, "k-dies", message("m1"))
    assert retry.status == 200 and retry.json == {"ok": True, "queued": 1, "rejected": []}
