"""SMTP account items (``TENANT#t / ACCOUNT#<id>``)."""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb.keys import ACCOUNT_PREFIX, account_sk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, item_key, marshal, unmarshal
from mail_proxy.errors import NotFoundError


class AccountItems(Table):
    """A tenant's SMTP accounts."""

    def put_account(self, tenant_id: str, account: dict[str, Any]) -> bool:
        """Create or replace; returns True if an account with that id existed."""
        item = {**account, "pk": tenant_pk(tenant_id), "sk": account_sk(account["id"])}
        resp = self._call("put_item", Item=marshal(item), ReturnValues="ALL_OLD")
        return "Attributes" in resp

    def get_account(self, tenant_id: str, account_id: str) -> dict[str, Any] | None:
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), account_sk(account_id)),
                          ConsistentRead=True)
        return unmarshal(resp["Item"]) if "Item" in resp else None

    def list_accounts(self, tenant_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}, ":a": {"S": ACCOUNT_PREFIX}},
            ConsistentRead=True,
        ):
            items.extend(unmarshal(i) for i in page)
        return items

    def delete_account(self, tenant_id: str, account_id: str) -> None:
        if self._write_if("delete_item", Key=item_key(tenant_pk(tenant_id), account_sk(account_id)),
                          ConditionExpression="attribute_exists(pk)") is None:
            raise NotFoundError(f"account '{account_id}' not found")
