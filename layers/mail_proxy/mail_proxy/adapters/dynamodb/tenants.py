"""Tenant items (``TENANT#t / #TENANT``): create, read, list, and the conditional updates of their
fields; ``replace_ciphertexts`` also rewrites an account item, as key rotation does both alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mail_proxy.adapters.dynamodb.keys import TENANT_SK, TENANTS_GSI1, account_sk, tenant_id_from_pk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, attribute_value, item_key, marshal, unmarshal
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant, entity_fields, entity_from_fields
from mail_proxy.errors import ConflictError, NotFoundError

KEY_ATTRIBUTES = ("pk", "sk", "gsi1pk", "gsi1sk")


def tenant_from_item(item: dict[str, Any]) -> Tenant:
    """The tenant an (unmarshalled) tenant item holds; its key attributes are the repository's own."""
    tenant: Tenant = entity_from_fields(Tenant, {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES})
    return tenant


def tenant_item(tenant: Tenant) -> dict[str, Any]:
    """The attributes a tenant item stores (without its keys): ``tenant_from_item``'s inverse."""
    return entity_fields(tenant)


class TenantItems(Table):
    """The tenant item of each tenant."""

    def create_tenant(self, tenant: Tenant, token_hash: str | None) -> None:
        tid = tenant.tenant_id
        item = {
            **tenant_item(tenant),
            "pk": tenant_pk(tid),
            "sk": TENANT_SK,
            "gsi1pk": TENANTS_GSI1,
            "gsi1sk": tid,
            "token_hash": token_hash,
        }
        if self._write_if("put_item", Item=marshal(item), ConditionExpression="attribute_not_exists(pk)") is None:
            raise ConflictError(f"tenant '{tid}' already exists")

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK), ConsistentRead=True)
        return tenant_from_item(unmarshal(resp["Item"])) if "Item" in resp else None

    def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            raise NotFoundError(f"tenant '{tenant_id}' not found")
        return tenant

    def list_tenants(self) -> list[Tenant]:
        keys = [
            (k["pk"]["S"], k["sk"]["S"])
            for k in self._query_keys("ByTenant", "gsi1pk", TENANTS_GSI1, limit=None)[0]
        ]
        return sorted((tenant_from_item(item) for item in self._batch_get(keys)), key=lambda t: t.tenant_id)

    def update_tenant(self, tenant_id: str, changes: dict[str, Any], removals: Sequence[str] = ()) -> None:
        sets = {**changes, "updated_at": clock.now_iso()}
        names = {f"#f{i}": k for i, k in enumerate(sets)}
        values = {f":v{i}": attribute_value(v) for i, v in enumerate(sets.values())}
        expr = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(sets)))
        if removals:
            offset = len(sets)
            names.update({f"#f{offset + i}": k for i, k in enumerate(removals)})
            expr += " REMOVE " + ", ".join(f"#f{offset + i}" for i in range(len(removals)))
        if self._write_if(
            "update_item",
            Key=item_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ) is None:
            raise NotFoundError(f"tenant '{tenant_id}' not found")

    def set_token_hash(self, tenant_id: str, token_hash: str | None) -> None:
        if token_hash:
            self.update_tenant(tenant_id, {"token_hash": token_hash})
        else:
            self.update_tenant(tenant_id, {}, removals=["token_hash"])

    def find_tenant_id_by_token_hash(self, token_hash: str) -> str | None:
        resp = self._call(
            "query",
            IndexName="ByToken",
            KeyConditionExpression="token_hash = :h",
            ExpressionAttributeValues={":h": {"S": token_hash}},
            Limit=2,
        )
        for item in resp.get("Items", []):
            tenant_id = tenant_id_from_pk(item["pk"]["S"])
            if item["sk"]["S"] == TENANT_SK and tenant_id is not None:
                return tenant_id
        return None

    def replace_dkim_keys(self, tenant_id: str, expected: list[dict[str, Any]], keys: list[dict[str, Any]]
                          ) -> bool:
        """Write the tenant's DKIM keys (``dkim_keys``, a list on the tenant item, so the sender has them with
        the tenant) only if the list is still ``expected``: False when a concurrent change (another
        registration, a re-encryption) won; the caller reads again."""
        condition = "attribute_exists(pk) AND " + ("#k = :old" if expected else "attribute_not_exists(#k)")
        values: dict[str, Any] = {":u": {"S": clock.now_iso()}}
        if expected:
            values[":old"] = attribute_value(expected)
        if keys:
            values[":new"] = attribute_value(keys)
        update = "SET #u = :u, #k = :new" if keys else "SET #u = :u REMOVE #k"
        return self._write_if(
            "update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK), UpdateExpression=update,
            ConditionExpression=condition, ExpressionAttributeNames={"#k": "dkim_keys", "#u": "updated_at"},
            ExpressionAttributeValues=values,
        ) is not None

    def change_suspended_batches(self, tenant_id: str, *, add: str | None = None, remove: str | None = None,
                                 clear: bool = False) -> list[str]:
        """Atomic set arithmetic on the tenant's suspended batch codes (``*`` means every batch)."""
        names = {"#s": "suspended_batches", "#u": "updated_at"}
        values: dict[str, Any] = {":u": {"S": clock.now_iso()}}
        if clear:
            expr = "SET #u = :u REMOVE #s"
        elif add is not None:
            expr = "SET #u = :u ADD #s :b"
            values[":b"] = {"SS": [add]}
        elif remove is not None:
            expr = "SET #u = :u DELETE #s :b"
            values[":b"] = {"SS": [remove]}
        else:
            raise ValueError("nothing to change")
        resp = self._write_if(
            "update_item",
            Key=item_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        if resp is None:
            raise NotFoundError(f"tenant '{tenant_id}' not found")
        return list(unmarshal(resp["Attributes"]).get("suspended_batches", []))

    def replace_ciphertexts(self, tenant_id: str, account_id: str | None,
                            changes: dict[tuple[str | int, ...], tuple[str, str]]) -> bool:
        """Swap re-encrypted values into the tenant item (or one account item), each only where the item
        still holds the ciphertext that was read (``path → (old, new)``). False, with nothing written, when
        any of them changed meanwhile or the item is gone: a concurrent change always wins."""
        if not changes:
            return True
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        conditions = ["attribute_exists(pk)"]
        for i, (path, (old, new)) in enumerate(changes.items()):
            ref = ""
            for part in path:  # a list index (retired signing secrets) follows its list: #n0[1].#n2
                ref += f"[{part}]" if isinstance(part, int) else \
                    ("." if ref else "") + names.setdefault(part, f"#n{len(names)}")
            values[f":o{i}"], values[f":n{i}"] = {"S": old}, {"S": new}
            conditions.append(f"{ref} = :o{i}")
            sets.append(f"{ref} = :n{i}")
        sk = account_sk(account_id) if account_id is not None else TENANT_SK
        return self._write_if(
            "update_item",
            Key=item_key(tenant_pk(tenant_id), sk),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames={v: k for k, v in names.items()},
            ExpressionAttributeValues=values,
        ) is not None

    def update_tenant_unless_set(self, tenant_id: str, changes: dict[str, Any], attribute: str) -> bool:
        """Write ``changes`` only while ``attribute`` is absent from the tenant: True when this call set it, so
        what follows a state change (a metric, an audit entry) happens once however many pollers judge."""
        names = {f"#f{i}": k for i, k in enumerate(changes)} | {"#flag": attribute}
        values = {f":v{i}": attribute_value(v) for i, v in enumerate(changes.values())}
        return self._write_if(
            "update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#flag)",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        ) is not None
