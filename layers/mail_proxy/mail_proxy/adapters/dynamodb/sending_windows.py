"""Sending windows: per-account counters (``TENANT#t#RATE#<account> / <window>#<start>``) that every
sender reserves from atomically.
"""

from __future__ import annotations

from mail_proxy.adapters.dynamodb.keys import rate_pk, rate_sk
from mail_proxy.adapters.dynamodb.table import Table, item_key


class SendingWindows(Table):
    """Reservations of sends within an account's rate windows."""

    def reserve_sends(self, tenant_id: str, account_id: str, window: str, start: int, seconds: int,
                      wanted: int, limit: int) -> int:
        """Reserve up to ``wanted`` sends in one window of an account; returns how many were granted.

        Atomic across every sender: the counter only grows by an amount that keeps it within the limit.
        """
        key = item_key(rate_pk(tenant_id, account_id), rate_sk(window, start))
        want = min(wanted, limit)
        for _attempt in range(4):
            if want <= 0:
                break
            if self._write_if(
                "update_item",
                Key=key,
                UpdateExpression="ADD sent_count :k SET expires_at = :e",
                ConditionExpression="attribute_not_exists(sent_count) OR sent_count <= :room",
                ExpressionAttributeValues={":k": {"N": str(want)}, ":room": {"N": str(limit - want)},
                                           ":e": {"N": str(start + seconds + 3600)}},
            ) is not None:
                return want
            current = self._call("get_item", Key=key, ConsistentRead=True).get("Item", {})
            used = int(current.get("sent_count", {}).get("N", "0"))
            want = min(want, limit - used)
        return 0

    def release_sends(self, tenant_id: str, account_id: str, window: str, start: int, count: int) -> None:
        """Give back reserved sends (nothing to give back once the window's counter has expired)."""
        if count <= 0:
            return
        self._write_if(
            "update_item",
            Key=item_key(rate_pk(tenant_id, account_id), rate_sk(window, start)),
            UpdateExpression="ADD sent_count :k",
            ConditionExpression="attribute_exists(sent_count)",
            ExpressionAttributeValues={":k": {"N": str(-count)}},
        )
