"""Items written before the typed entities (or by hand, with the AWS console or CLI) read as they did before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mail_proxy.adapters.dynamodb.accounts import account_from_item
from mail_proxy.adapters.dynamodb.table import unmarshal
from mail_proxy.adapters.dynamodb.tenants import tenant_from_item


def stored_tenant(**attributes: dict[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": "TENANT#acme"}, "sk": {"S": "#TENANT"}, "tenant_id": {"S": "acme"}, **attributes}


@pytest.mark.parametrize("active", [{"N": "0"}, {"BOOL": False}, {"S": ""}])
def test_a_tenant_stored_as_inactive_in_any_falsy_form_does_not_send(active: dict[str, Any]) -> None:
    tenant = tenant_from_item(unmarshal(stored_tenant(active=active)))
    assert tenant.is_active is False
    assert tenant.is_sending(None) is False


@pytest.mark.parametrize("active", [None, {"N": "1"}, {"BOOL": True}, {"NULL": True}])
def test_a_tenant_without_active_or_with_a_truthy_one_sends(active: dict[str, Any] | None) -> None:
    tenant = tenant_from_item(unmarshal(stored_tenant(**({"active": active} if active else {}))))
    assert tenant.is_active is True
    assert tenant.is_sending("news") is True


def test_an_account_read_from_dynamodb_has_whole_numbers_that_json_and_rate_limits_accept() -> None:
    account = account_from_item(unmarshal({
        "pk": {"S": "TENANT#acme"}, "sk": {"S": "ACCOUNT#main"}, "id": {"S": "main"}, "tenant_id": {"S": "acme"},
        "host": {"S": "smtp.acme.example"}, "port": {"N": "587"}, "limit_per_minute": {"N": "10"},
        "imap_port": {"N": "993"}}))
    assert type(account.port) is int and type(account.imap_port) is int
    assert account.limit_per("minute") == 10
    assert json.loads(json.dumps(account.stored()))["port"] == 587


def test_a_message_state_reads_numbers_from_dynamodb_and_a_null_priority_as_the_default() -> None:
    from decimal import Decimal

    from mail_proxy.domain.message_lifecycle import MessageState
    from mail_proxy.domain.models import MessageStatus

    state = MessageState.from_item({"id": "m1", "status": "deferred", "attempts": Decimal("2"),
                                    "priority": Decimal("0"), "deferred_ts": Decimal("100"), "lease_until": None,
                                    "due_pk": "", "payload_version": None})
    assert (state.status, state.attempts, state.priority, state.deferred_ts) == (MessageStatus.DEFERRED, 2, 0, 100)
    assert state.claimable(100) and not state.claimable(99) and not state.watched
    assert MessageState.from_item({"id": "m2", "status": "pending", "priority": None}).priority == 2
