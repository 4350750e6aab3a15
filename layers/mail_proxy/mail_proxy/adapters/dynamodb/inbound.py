"""Mail that comes back (bounces, PEC receipts): polled mailboxes' positions, events appended to
messages once per receipt, and the PEC messages awaiting acceptance.
"""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb.keys import (
    PEC_WAIT_PREFIX,
    STATE_SK,
    mailbox_sk,
    message_pk,
    parse_pec_wait_sk,
    pec_msgid_sk,
    pec_wait_sk,
    tenant_pk,
)
from mail_proxy.adapters.dynamodb.table import Table, attribute_value, item_key, marshal
from mail_proxy.domain import clock


class InboundItems(Table):
    """Returned mail's bookkeeping, under the tenant's own partition so it goes with the tenant:
    ``#MAILBOX#<name>`` (where a bounce or PEC mailbox was read up to), and for PEC messages
    ``PECWAIT#<sent ts>#<id>`` (awaiting acceptance) and ``PECMSGID#<Message-ID>`` (the receipts' link back to
    the message)."""

    def get_mailbox_position(self, tenant_id: str, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID processed) of a polled mailbox, or None before its first poll."""
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), mailbox_sk(mailbox)), ConsistentRead=True)
        item = resp.get("Item")
        if not item:
            return None
        return int(item["uidvalidity"]["N"]), int(item["last_uid"]["N"])

    def save_mailbox_position(self, tenant_id: str, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        """Move a mailbox's position forward (never back within one UIDVALIDITY: a slower poller loses)."""
        self._write_if(
            "put_item",
            Item=marshal({"pk": tenant_pk(tenant_id), "sk": mailbox_sk(mailbox), "uidvalidity": uidvalidity,
                           "last_uid": last_uid, "polled_ts": clock.now_ts()}),
            ConditionExpression="attribute_not_exists(pk) OR uidvalidity <> :v OR last_uid <= :u",
            ExpressionAttributeValues={":v": {"N": str(uidvalidity)}, ":u": {"N": str(last_uid)}},
        )

    def count_mailbox_failure(self, tenant_id: str, mailbox: str, uidvalidity: int, uid: int) -> int:
        """One more poll that failed on this mail; how many did in a row (moving the position forgets them)."""
        key = item_key(tenant_pk(tenant_id), mailbox_sk(mailbox))
        mail = {":v": {"N": str(uidvalidity)}, ":u": {"N": str(uid)}, ":one": {"N": "1"}}
        resp = self._write_if(
            "update_item", Key=key, UpdateExpression="SET failures = failures + :one",
            ConditionExpression="failing_uidvalidity = :v AND failing_uid = :u", ExpressionAttributeValues=mail,
            ReturnValues="UPDATED_NEW",
        )
        if resp is not None:
            return int(resp["Attributes"]["failures"]["N"])
        self._call("update_item", Key=key, ExpressionAttributeValues=mail,
                   UpdateExpression="SET failing_uidvalidity = :v, failing_uid = :u, failures = :one")
        return 1

    def add_inbound_event(self, tenant_id: str, message_id: str, event: dict[str, Any], receipt_key: str, *,
                          seen_status: str, new_status: str | None = None) -> bool:
        """Append an event that came back by mail (bounce, PEC receipt), once per ``receipt_key``.

        Conditional on the status the caller read, so a concurrent change (the sender's own write) is never
        overwritten; False means the condition failed: re-read and decide again.
        """
        sets = ["#e = list_append(if_not_exists(#e, :empty), :ev)",
                "#r = list_append(if_not_exists(#r, :empty), :rl)", "updated_at = :u"]
        values: dict[str, Any] = {
            ":empty": {"L": []}, ":ev": {"L": [attribute_value(event)]},
            ":rl": {"L": [{"S": receipt_key}]}, ":rid": {"S": receipt_key}, ":u": {"S": clock.now_iso()},
            ":seen": {"S": seen_status},
        }
        if new_status is not None:
            sets.append("#s = :new")
            values[":new"] = {"S": new_status}
        return self._write_if(
            "update_item",
            Key=item_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(pk) AND #s = :seen AND NOT contains(#r, :rid)",
            ExpressionAttributeNames={"#e": "events", "#r": "inbound_ids", "#s": "status"},
            ExpressionAttributeValues=values,
        ) is not None

    def watch_pec_message(self, tenant_id: str, message_id: str, *, sent_ts: int, message_id_header: str | None,
                          expires_at: int) -> None:
        """Remember a message sent through a PEC account until its acceptance (or timeout) is settled."""
        pk = tenant_pk(tenant_id)
        items = [{"pk": pk, "sk": pec_wait_sk(sent_ts, message_id), "message_id": message_id,
                  "expires_at": expires_at}]
        if message_id_header:
            items.append({"pk": pk, "sk": pec_msgid_sk(message_id_header), "message_id": message_id,
                          "expires_at": expires_at})
        for item in items:
            self._call("put_item", Item=marshal(item))

    def pec_messages_sent_before(self, tenant_id: str, sent_before: int, *, limit: int = 200
                                 ) -> list[tuple[int, str]]:
        """(sent ts, message id) of PEC messages still awaiting acceptance that were sent before a time."""
        resp = self._call(
            "query",
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}, ":lo": {"S": PEC_WAIT_PREFIX},
                                       ":hi": {"S": pec_wait_sk(sent_before)}},
            Limit=limit,
        )
        return [parse_pec_wait_sk(raw["sk"]["S"]) for raw in resp.get("Items", [])]

    def forget_pec_wait(self, tenant_id: str, sent_ts: int, message_id: str) -> None:
        self._call("delete_item", Key=item_key(tenant_pk(tenant_id), pec_wait_sk(sent_ts, message_id)))

    def message_id_for_header(self, tenant_id: str, message_id_header: str) -> str | None:
        """The message a PEC receipt's ``X-Riferimento-Message-ID`` points at (within this tenant only)."""
        resp = self._call("get_item", Key=item_key(tenant_pk(tenant_id), pec_msgid_sk(message_id_header)),
                          ConsistentRead=True)
        item = resp.get("Item")
        return item["message_id"]["S"] if item else None
