"""SMTP account items (``TENANT#t / ACCOUNT#<id>``)."""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb.keys import ACCOUNT_PREFIX, account_sk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, item_key, marshal, unmarshal
from mail_proxy.domain.entities import Account, entity_fields, entity_from_fields
from mail_proxy.errors import NotFoundError


def account_from_item(item: dict[str, Any]) -> Account:
    """The account an (unmarshalled) account item holds; its keys are the repository's own."""
    account: Account = entity_from_fields(Account, {k: v for k, v in item.items() if k not in ("pk", "sk")})
    return account


def account_item(account: Account) -> dict[str, Any]:
    """The attributes an account item stores (without its keys): ``account_from_item``'s inverse."""
    return entity_fields(account)


class AccountItems(Table):
    """A tenant's SMTP accounts."""

    def put_account(self, tenant_id: str, account: Account) -> bool:
        """Create or replace; returns True if an account with that id existed."""
        item = {**account_item(account), "pk": tenant_pk(tenant_id), "sk": account_sk(account.id)}
        resp = self._call("put_item", Item=marshal(item), ReturnValues="ALL_OLD")
        return "Attributes" in resp

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), account_sk(account_id)),
                          ConsistentRead=True)
        return account_from_item(unmarshal(resp["Item"])) if "Item" in resp else None

    def list_accounts(self, tenant_id: str) -> list[Account]:
        items: list[Account] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}, ":a": {"S": ACCOUNT_PREFIX}},
            ConsistentRead=True,
        ):
            items.extend(account_from_item(unmarshal(i)) for i in page)
        return items

    def delete_account(self, tenant_id: str, account_id: str) -> None:
        if self._write_if("delete_item", Key=item_key(tenant_pk(tenant_id), account_sk(account_id)),
                          ConditionExpression="attribute_exists(pk)") is None:
            raise NotFoundError(f"account '{account_id}' not found")
