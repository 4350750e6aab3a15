"""Message items: the small ``STATE`` item and the immutable ``PAYLOAD#<version>`` items of each
message's partition; storing, replacing, reading and deleting them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mail_proxy.adapters.dynamodb import keys as dynamo_keys
from mail_proxy.adapters.dynamodb.keys import (
    PAYLOAD_PREFIX,
    STATE_SK,
    due_pk,
    due_sk,
    held_pk,
    message_gsi1sk,
    message_id_from_pk,
    message_pk,
    messages_gsi1pk,
    payload_sk,
)
from mail_proxy.adapters.dynamodb.table import Table, item_key, marshal, unmarshal
from mail_proxy.domain import clock
from mail_proxy.domain.models import MessageStatus


class MessageItems(Table):
    """Each message's state and content."""

    def get_states(self, tenant_id: str, message_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = [(message_pk(tenant_id, mid), STATE_SK) for mid in dict.fromkeys(message_ids)]
        return {item["id"]: item for item in self._batch_get(keys) if item.get("sk") == STATE_SK}

    def put_messages(self, tenant_id: str, entries: Sequence[tuple[dict[str, Any], dict[str, Any], str | None]],
                     workers: int = 16) -> list[bool]:
        """Store new messages, or replace ones still waiting (or failed); one result per entry.

        Each payload goes first under a fresh version key, so it never overwrites anything and the payloads
        can be written in batches; then each state is written on condition that no message exists or the
        existing one is replaceable, so a message being sent or already sent is never touched (False). The
        conditional writes run in parallel: a 1,000-message call must fit the API's time limit.
        """
        prepared = [self._message_items(tenant_id, state, payload) for state, payload, _old in entries]
        self._batch_write([{"PutRequest": {"Item": marshal(payload_item)}} for _s, payload_item in prepared])

        def write_state(index: int) -> bool:
            return self._write_if(
                "put_item",
                Item=marshal(prepared[index][0]),
                ConditionExpression="attribute_not_exists(pk) OR #s IN (:p, :d, :e)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":p": {"S": MessageStatus.PENDING}, ":d": {"S": MessageStatus.DEFERRED},
                    ":e": {"S": MessageStatus.ERROR},
                },
            ) is not None

        if len(entries) <= 2:
            results = [write_state(i) for i in range(len(entries))]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(entries))) as pool:
                results = list(pool.map(write_state, range(len(entries))))
        stale: list[tuple[str, str]] = []
        for (state_item, payload_item), (_s, _p, old_version), stored in zip(prepared, entries, results, strict=True):
            if not stored:
                stale.append((payload_item["pk"], payload_item["sk"]))  # never referenced
            elif old_version and payload_sk(old_version) != payload_item["sk"]:
                stale.append((state_item["pk"], payload_sk(old_version)))  # the replaced content
        self._batch_delete(stale)
        return results

    @staticmethod
    def _message_items(tenant_id: str, state: dict[str, Any], payload: dict[str, Any]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        mid = state["id"]
        pk = message_pk(tenant_id, mid)
        version = uuid.uuid4().hex[:12]
        payload_item = {
            "pk": pk,
            "sk": payload_sk(version),
            "payload": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            # a held message's content has no expiry until the scheduler releases it
            "expires_at": None if state.get("held") else (
                max(state.get("deferred_ts") or 0, clock.now_ts()) + dynamo_keys.PAYLOAD_TTL_SECONDS),
        }
        fields = dict(state)
        due_ts = fields.pop("due_ts", None)
        held = fields.pop("held", False)
        index_pk: str | None
        index_sk: str | None
        if held:
            index_pk, index_sk = held_pk(tenant_id), mid
        elif due_ts is not None:
            index_pk, index_sk = due_pk(tenant_id), due_sk(due_ts, mid)
        else:
            index_pk = index_sk = None
        state_item = {
            **fields,
            "due_pk": index_pk,
            "due_sk": index_sk,
            "pk": pk,
            "sk": STATE_SK,
            "tenant_id": tenant_id,
            "payload_version": version,
            "gsi1pk": messages_gsi1pk(tenant_id),
            "gsi1sk": message_gsi1sk(fields["created_ms"], mid),
        }
        return state_item, payload_item

    def get_message(self, tenant_id: str, message_id: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The state and its payload in one consistent query of the message's partition."""
        state: dict[str, Any] | None = None
        payloads: dict[str, dict[str, Any]] = {}
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": message_pk(tenant_id, message_id)}},
            ConsistentRead=True,
        ):
            for raw in page:
                item = unmarshal(raw)
                if item["sk"] == STATE_SK:
                    state = item
                elif item["sk"].startswith(PAYLOAD_PREFIX):
                    payloads[item["sk"].removeprefix(PAYLOAD_PREFIX)] = item
        if state is None:
            return None
        payload_item = payloads.get(state.get("payload_version", ""))
        return state, (json.loads(payload_item["payload"]) if payload_item else None)

    def get_payloads(self, tenant_id: str, states: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        keys = [(message_pk(tenant_id, s["id"]), payload_sk(s["payload_version"]))
                for s in states if s.get("payload_version")]
        result: dict[str, dict[str, Any]] = {}
        for item in self._batch_get(keys):
            result[message_id_from_pk(item["pk"])] = json.loads(item["payload"])
        return result

    def delete_messages(self, tenant_id: str, message_ids: Iterable[str]) -> int:
        """Delete every item of each message; returns how many messages existed."""
        removed = 0
        keys: list[tuple[str, str]] = []
        for mid in dict.fromkeys(message_ids):
            item_keys: list[tuple[str, str]] = []
            for page in self._paginate_query(
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": message_pk(tenant_id, mid)}},
                ProjectionExpression="pk, sk",
                ConsistentRead=True,
            ):
                item_keys.extend((i["pk"]["S"], i["sk"]["S"]) for i in page)
            if any(sk == STATE_SK for _, sk in item_keys):
                removed += 1
            keys.extend(item_keys)
        self._batch_delete(keys)
        return removed

    def delete_messages_if(self, tenant_id: str, message_ids: Iterable[str], *, final_only: bool
                           ) -> tuple[list[str], list[str]]:
        """Delete messages that are not being sent (or, with ``final_only``, that are sent or failed).

        The state item goes first, on that condition, so a message a sender holds is never removed under it
        (the sender's outcome write then finds it gone and writes nothing): (removed ids, refused ids).
        """
        if final_only:
            condition = "attribute_exists(pk) AND #s IN (:sent, :error, :bounced)"
            values: dict[str, Any] = {":sent": {"S": MessageStatus.SENT}, ":error": {"S": MessageStatus.ERROR},
                                      ":bounced": {"S": MessageStatus.BOUNCED}}
        else:
            condition = "attribute_exists(pk) AND (#s <> :sending OR lease_until < :now)"
            values = {":sending": {"S": MessageStatus.SENDING}, ":now": {"N": str(clock.now_ts())}}
        removed: list[str] = []
        refused: list[str] = []
        payloads: list[tuple[str, str]] = []
        for mid in dict.fromkeys(message_ids):
            old = self._write_if("delete_item", Key=item_key(message_pk(tenant_id, mid), STATE_SK),
                                 ConditionExpression=condition, ExpressionAttributeNames={"#s": "status"},
                                 ExpressionAttributeValues=values, ReturnValues="ALL_OLD")
            if old is None:
                refused.append(mid)
                continue
            removed.append(mid)
            version = old.get("Attributes", {}).get("payload_version", {}).get("S")
            if version:
                # only the deleted message's own content: a resubmission of the id stored meanwhile is kept
                payloads.append((message_pk(tenant_id, mid), payload_sk(version)))
        self._batch_delete(payloads)
        return removed, refused
