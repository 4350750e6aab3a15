"""What the scheduler reads and keeps: the sparse ``Due`` index (due and held messages) and its
``#SCHEDULER`` bookkeeping item (reconciliation checkpoint, where the reading of held messages goes on).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mail_proxy.adapters.dynamodb.keys import (
    SCHEDULER_SK,
    STATE_SK,
    due_pk,
    due_sk,
    due_sk_bound,
    held_pk,
    message_pk,
    parse_due_sk,
    tenant_pk,
)
from mail_proxy.adapters.dynamodb.table import Table, item_key, marshal


class DueIndex(Table):
    """The scheduler's view of waiting messages."""

    def waiting_message_keys(self, tenant_id: str, *, due_before: int | None = None
                             ) -> Iterator[tuple[int, str]]:
        """(due time, message id) of the tenant's waiting messages, earliest first."""
        cond = "due_pk = :p"
        values: dict[str, Any] = {":p": {"S": due_pk(tenant_id)}}
        if due_before is not None:
            cond += " AND due_sk < :d"
            values[":d"] = {"S": due_sk_bound(due_before + 1)}
        for page in self._paginate_query(IndexName="Due", KeyConditionExpression=cond,
                                         ExpressionAttributeValues=values):
            for item in page:
                yield parse_due_sk(item["due_sk"]["S"])

    def set_due(self, tenant_id: str, message_id: str, due_ts: int) -> None:
        """Move a waiting message's next check time (only if it still exists)."""
        self._write_if(
            "update_item",
            Key=item_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="SET due_pk = :p, due_sk = :s",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":p": {"S": due_pk(tenant_id)},
                                       ":s": {"S": due_sk(due_ts, message_id)}},
        )

    def clear_due(self, tenant_id: str, message_id: str) -> None:
        self._write_if(
            "update_item",
            Key=item_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="REMOVE due_pk, due_sk",
            ConditionExpression="attribute_exists(pk)",
        )

    def held_message_ids(self, tenant_id: str, *, limit: int, after: str | None = None) -> list[str]:
        """Ids of messages held for their tenant or batch, in id order after ``after`` (at most ``limit``)."""
        start = None
        if after is not None:
            start = {"due_pk": {"S": held_pk(tenant_id)}, "due_sk": {"S": after},
                     "pk": {"S": message_pk(tenant_id, after)}, "sk": {"S": STATE_SK}}
        keys, _ = self._query_keys("Due", "due_pk", held_pk(tenant_id), limit=limit, start=start)
        return [k["due_sk"]["S"] for k in keys]

    def get_held_cursor(self, tenant_id: str) -> str | None:
        """Where the scheduler's reading of the held messages goes on (None: from the first)."""
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), SCHEDULER_SK), ConsistentRead=True,
                          ProjectionExpression="held_after")
        item = resp.get("Item") or {}
        return item["held_after"]["S"] if "held_after" in item else None

    def set_held_cursor(self, tenant_id: str, after: str | None) -> None:
        key = item_key(tenant_pk(tenant_id), SCHEDULER_SK)
        if after is None:
            self._call("update_item", Key=key, UpdateExpression="REMOVE held_after")
        else:
            self._call("update_item", Key=key, UpdateExpression="SET held_after = :a",
                       ExpressionAttributeValues={":a": {"S": after}})

    def get_scheduler_checkpoint(self, tenant_id: str) -> int | None:
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), SCHEDULER_SK), ConsistentRead=True)
        item = resp.get("Item")
        return int(item["checked_until_ms"]["N"]) if item and "checked_until_ms" in item else None

    def set_scheduler_checkpoint(self, tenant_id: str, checked_until_ms: int) -> None:
        self._call("put_item", Item=marshal({"pk": tenant_pk(tenant_id), "sk": SCHEDULER_SK,
                                              "checked_until_ms": checked_until_ms}))
