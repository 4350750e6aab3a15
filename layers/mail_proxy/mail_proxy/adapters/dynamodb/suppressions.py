"""The suppression list: ``SUPPRESS#<address>`` items under the tenant's partition (``expires_at`` is
the table's TTL; an expired entry is ignored before the TTL deletes it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mail_proxy.adapters.dynamodb.keys import SUPPRESSION_PREFIX, TENANT_SK, suppression_sk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, item_key, marshal, unmarshal
from mail_proxy.domain import clock


class SuppressionItems(Table):
    """A tenant's suppressed addresses."""

    def put_suppression(self, tenant_id: str, entry: dict[str, Any], *, keep_longer: bool = False) -> None:
        """Add or refresh a suppressed address (``expires_at`` is the table's TTL attribute).

        ``keep_longer``: an entry for every message that already lasts longer (a manual one) is left as it
        is; an entry scoped to lists is replaced (this one blocks every message).
        """
        item = marshal({**entry, "pk": tenant_pk(tenant_id), "sk": suppression_sk(entry["address"])})
        if not keep_longer:
            self._call("put_item", Item=item)
            return
        self._write_if("put_item", Item=item,
                       ConditionExpression="attribute_not_exists(pk) OR expires_at < :e OR attribute_exists(lists)",
                       ExpressionAttributeValues={":e": {"N": str(entry["expires_at"])}})

    def add_suppressed_list(self, tenant_id: str, entry: dict[str, Any], list_id: str) -> None:
        """Suppress an address for the messages of one more list (``lists``, a string set), unless a live
        entry already blocks every message; an expired entry is replaced, its lists forgotten."""
        pk, sk = tenant_pk(tenant_id), suppression_sk(entry["address"])
        fields = {k: v for k, v in entry.items() if k != "address" and v is not None}
        now = {":now": {"N": str(clock.now_ts())}}
        added = self._write_if(
            "update_item", Key=item_key(pk, sk),
            UpdateExpression="ADD lists :l SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression="attribute_exists(lists) AND expires_at >= :now",
            ExpressionAttributeNames={f"#f{i}": name for i, name in enumerate(fields)},
            ExpressionAttributeValues={":l": {"SS": [list_id]}, **now,
                                       **{f":f{i}": v for i, v in enumerate(marshal(fields).values())}})
        if added is None:
            self._write_if("put_item", Item=marshal({**entry, "lists": {list_id}, "pk": pk, "sk": sk}),
                           ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                           ExpressionAttributeValues=now)

    def list_suppressions(self, tenant_id: str, *, limit: int, after: str | None
                          ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the tenant's live suppressions in address order; the second value is the next ``after``."""
        now = clock.now_ts()
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": {"S": tenant_pk(tenant_id)}, ":s": {"S": SUPPRESSION_PREFIX}},
            "ConsistentRead": True,
        }
        if after:
            kwargs["ExclusiveStartKey"] = item_key(tenant_pk(tenant_id), suppression_sk(after))
        items: list[dict[str, Any]] = []
        last: str | None = None
        for _page in range(20):
            kwargs["Limit"] = limit - len(items)
            resp = self._call("query", **kwargs)
            for raw in resp.get("Items", []):
                item = unmarshal(raw)
                last = item["sk"].removeprefix(SUPPRESSION_PREFIX)
                if int(item.get("expires_at") or now + 1) > now:
                    items.append(item)
            start = resp.get("LastEvaluatedKey")
            if not start or len(items) >= limit:
                return items, (last if start else None)
            kwargs["ExclusiveStartKey"] = start
        return items, last

    def suppressed(self, tenant_id: str, addresses: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The live suppressions among ``addresses`` (one BatchGetItem, eventually consistent: half the read
        cost, and an entry a second old is as good), keyed by lower-cased address.

        Expired entries are ignored even before DynamoDB's TTL deletes them (that can take days).
        """
        keys = [(tenant_pk(tenant_id), suppression_sk(a)) for a in addresses]
        now = clock.now_ts()
        return {item["sk"].removeprefix(SUPPRESSION_PREFIX): item for item in self._batch_get(keys, consistent=False)
                if int(item.get("expires_at") or now + 1) > now}

    def mark_has_suppressions(self, tenant_id: str) -> None:
        """Flag the tenant as having a suppression list, so the sender reads it only for such tenants."""
        self._write_if("update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="SET has_suppressions = :t",
                       ConditionExpression="attribute_exists(pk) AND attribute_not_exists(has_suppressions)",
                       ExpressionAttributeValues={":t": {"BOOL": True}})

    def delete_suppression(self, tenant_id: str, address: str) -> bool:
        resp = self._call("delete_item", Key=item_key(tenant_pk(tenant_id), suppression_sk(address)),
                          ReturnValues="ALL_OLD")
        old = unmarshal(resp["Attributes"]) if "Attributes" in resp else None
        return old is not None and int(old.get("expires_at") or clock.now_ts() + 1) > clock.now_ts()
