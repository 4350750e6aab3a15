"""The reputation guard's hourly counters (``TENANT#t / REPUTATION#<hour start>``)."""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb.keys import MAX_DUE_TS, REPUTATION_PREFIX, reputation_sk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, item_key, unmarshal


class ReputationCounters(Table):
    """One item an hour under the tenant's partition: the reputation guard's counters (``sent``, ``bounced``,
    ``complained``, and ``<kind>@<account id>``), expired by the table's TTL."""

    def add_reputation_counts(self, tenant_id: str, bucket: int, counters: dict[str, int], *,
                              expires_at: int) -> None:
        """Add to one hour's counters (atomic ``ADD``: every sender and poller adds to the same item)."""
        names = {f"#c{i}": name for i, name in enumerate(counters)}
        values = {f":n{i}": {"N": str(int(n))} for i, n in enumerate(counters.values())}
        self._call("update_item", Key=item_key(tenant_pk(tenant_id), reputation_sk(bucket)),
                   UpdateExpression="ADD " + ", ".join(f"#c{i} :n{i}" for i in range(len(counters)))
                   + " SET expires_at = :e",
                   ExpressionAttributeNames=names, ExpressionAttributeValues={**values, ":e": {"N": str(expires_at)}})

    def reputation_buckets(self, tenant_id: str, since: int) -> list[dict[str, Any]]:
        """The hour items from ``since`` on (one Query; a window is at most 169 small items), each with its
        start as ``bucket``."""
        found: list[dict[str, Any]] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)},
                                       ":lo": {"S": reputation_sk(since)},
                                       ":hi": {"S": reputation_sk(MAX_DUE_TS)}},
            ConsistentRead=True,
        ):
            for raw in page:
                item = unmarshal(raw)
                item["bucket"] = int(item.pop("sk").removeprefix(REPUTATION_PREFIX))
                for attr in ("pk", "expires_at"):
                    item.pop(attr, None)
                found.append(item)
        return found
