"""``Idempotency-Key`` on add-messages: a retried request returns the first answer, scoped to the tenant.

The module shares one moto stack (see ``test_auth_matrix.shared_stack``); each test has its own tenants,
named ``acme<n>`` and ``beta<n>``, and its own idempotency keys.
"""

from __future__ import annotations

import itertools
from typing import Any

import boto3
import pytest

from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message
from tests.integration.test_auth_matrix import shared_stack  # noqa: F401  (module-scoped moto stack)

_serial = itertools.count(1)
TENANTS: dict[str, str] = {}  # token -> tenant id, for the helpers below


def new_tenant(api: ApiClient, name: str) -> str:
    tenant_id = f"{name}{next(_serial)}"
    token = api.create_tenant(tenant_id)
    api.create_account(token)
    TENANTS[token] = tenant_id
    return token


@pytest.fixture
def api(shared_stack: tuple[Stack, ApiClient]) -> ApiClient:  # noqa: F811
    return shared_stack[1]


@pytest.fixture
def stack(shared_stack: tuple[Stack, ApiClient]) -> Stack:  # noqa: F811
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
        ExpressionAttributeValues={":p": {"S": f"TENANT#{TENANTS[token]}#MSG#{message_id}"}})["Items"]
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
