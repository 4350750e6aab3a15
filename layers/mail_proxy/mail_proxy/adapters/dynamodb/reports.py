"""The report sync protocol's bookkeeping: events marked reported on the message, and the sync,
quiet-period and retry fields of the tenant item (none of them a configuration change).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mail_proxy.adapters.dynamodb.keys import STATE_SK, TENANT_SK, message_pk, tenant_pk
from mail_proxy.adapters.dynamodb.table import Table, item_key


class ReportItems(Table):
    """What the reporter writes."""

    def mark_events_reported(self, tenant_id: str, message_id: str, events: Sequence[tuple[int, str]],
                             reported_ts: int, expires_at: int | None) -> bool:
        """Set ``reported_ts`` on acknowledged events; False if the message changed or vanished meanwhile.

        Events are only ever appended, so an index stays valid; the event id guards against a replaced
        message (whose events start over).
        """
        names: dict[str, str] = {"#e": "events"}
        values: dict[str, Any] = {":t": {"N": str(reported_ts)}}
        sets, conditions = [], ["attribute_exists(pk)"]
        for n, (index, event_id) in enumerate(events):
            sets.append(f"#e[{int(index)}].reported_ts = :t")
            conditions.append(f"#e[{int(index)}].event_id = :id{n}")
            values[f":id{n}"] = {"S": event_id}
        if expires_at is not None:
            sets.append("expires_at = :x")
            values[":x"] = {"N": str(expires_at)}
        return self._write_if(
            "update_item",
            Key=item_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ) is not None

    def set_sync_state(self, tenant_id: str, *, last_sync_ts: int, quiet_until: int | None,
                       acknowledged: bool = False) -> None:
        """Bookkeeping of the report sync protocol; does not count as a configuration change.

        ``acknowledged``: a report record was just acknowledged, so the count of failed attempts and the
        receipt of the hidden record start over.
        """
        sets = ["last_sync_ts = :s"] + (["report_quiet_until = :q"] if quiet_until else [])
        removals = ([] if quiet_until else ["report_quiet_until"]) + (
            ["report_attempts", "report_attempt_record", "report_hidden_receipt"] if acknowledged else [])
        values: dict[str, Any] = {":s": {"N": str(last_sync_ts)}}
        if quiet_until:
            values[":q"] = {"N": str(quiet_until)}
        expr = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removals) if removals else "")
        self._write_if("update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK), UpdateExpression=expr,
                       ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues=values)

    def count_report_failure(self, tenant_id: str, record_id: str) -> int:
        """One more failed POST of a report record; returns how many that record has had.

        Counted on the tenant item because one record at a time is attempted per tenant (its FIFO group),
        and kept by the reporter rather than taken from SQS's receive count, so hides for quiet do not count.
        """
        key = item_key(tenant_pk(tenant_id), TENANT_SK)
        resp = self._write_if("update_item", Key=key, UpdateExpression="ADD report_attempts :one",
                              ConditionExpression="report_attempt_record = :r",
                              ExpressionAttributeValues={":one": {"N": "1"}, ":r": {"S": record_id}},
                              ReturnValues="UPDATED_NEW")
        if resp is None:
            resp = self._write_if("update_item", Key=key,
                                  UpdateExpression="SET report_attempts = :one, report_attempt_record = :r",
                                  ConditionExpression="attribute_exists(pk)",
                                  ExpressionAttributeValues={":one": {"N": "1"}, ":r": {"S": record_id}},
                                  ReturnValues="UPDATED_NEW")
        return int((resp or {}).get("Attributes", {}).get("report_attempts", {}).get("N", 1))

    def remember_hidden_report(self, tenant_id: str, receipt_handle: str) -> None:
        """The receipt of the record hidden for quiet or backoff, so ``run-now`` can show it again at once."""
        self._write_if("update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="SET report_hidden_receipt = :h", ConditionExpression="attribute_exists(pk)",
                       ExpressionAttributeValues={":h": {"S": receipt_handle}})

    def end_report_wait(self, tenant_id: str) -> str | None:
        """End the quiet period; returns the receipt of the record hidden for quiet or backoff, if any."""
        resp = self._write_if("update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
                              UpdateExpression="REMOVE report_quiet_until, report_hidden_receipt",
                              ConditionExpression="attribute_exists(pk)", ReturnValues="UPDATED_OLD")
        hidden = (resp or {}).get("Attributes", {}).get("report_hidden_receipt")
        return str(hidden["S"]) if hidden else None

    def claim_pending_sync(self, tenant_id: str, sync_id: str, *, now: int, stale_before: int) -> bool:
        """Mark an empty sync as pending unless one is (and is not older than ``stale_before``)."""
        return self._write_if(
            "update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression="SET sync_pending = :id, sync_pending_ts = :now",
            ConditionExpression="attribute_exists(pk) AND "
                                "(attribute_not_exists(sync_pending) OR sync_pending_ts < :stale)",
            ExpressionAttributeValues={":id": {"S": sync_id}, ":now": {"N": str(now)},
                                       ":stale": {"N": str(stale_before)}},
        ) is not None

    def clear_pending_sync(self, tenant_id: str, sync_id: str) -> None:
        """The pending empty sync ``sync_id`` was processed (or never queued); another may be queued."""
        self._write_if("update_item", Key=item_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="REMOVE sync_pending, sync_pending_ts",
                       ConditionExpression="sync_pending = :id",
                       ExpressionAttributeValues={":id": {"S": sync_id}})
