"""Reading messages in bulk: a tenant's messages by creation time (``ByTenant``), by recipient (the
sharded recipient index), the bounded census behind ``GET /status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mail_proxy.adapters.dynamodb.keys import (
    ID_AFTER_ALL,
    MAX_CREATED_MS,
    MAX_INDEXED_RECIPIENTS,
    RECIPIENT_INDEX_TTL_SECONDS,
    STATE_SK,
    created_ms_from_gsi1sk,
    created_sk,
    message_id_from_pk,
    messages_gsi1pk,
    recipient_index_pk,
    recipient_index_sk,
)
from mail_proxy.adapters.dynamodb.table import Table, _decode_key_cursor, decode_cursor, encode_cursor, marshal
from mail_proxy.domain import clock


class MessageListing(Table):
    """Pages and counts of a tenant's messages."""

    def list_message_states(self, tenant_id: str, *, limit: int, cursor: str | None,
                            created_from_ms: int | None = None, created_to_ms: int | None = None
                            ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the tenant's messages, oldest first; with a creation-time range (inclusive, in ms),
        only that range of the ``ByTenant`` index is read."""
        gsi1pk = messages_gsi1pk(tenant_id)
        if created_from_ms is None and created_to_ms is None:
            start = decode_cursor(cursor, expected_gsi1pk=gsi1pk)
            keys, last = self._query_keys("ByTenant", "gsi1pk", gsi1pk, limit=limit, start=start)
        else:
            # the bounds take in every message id created within the last millisecond
            low = created_sk(created_from_ms or 0)
            high = created_sk(MAX_CREATED_MS if created_to_ms is None else created_to_ms) + ID_AFTER_ALL
            start = decode_cursor(cursor, expected_gsi1pk=gsi1pk, bounds=(low, high))
            kwargs: dict[str, Any] = {
                "IndexName": "ByTenant", "KeyConditionExpression": "gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
                "ExpressionAttributeValues": {":p": {"S": gsi1pk}, ":lo": {"S": low}, ":hi": {"S": high}},
                "Limit": limit,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self._call("query", **kwargs)
            keys, last = resp.get("Items", []), resp.get("LastEvaluatedKey")
        order = [k["pk"]["S"] for k in keys]
        found = {s["pk"]: s for s in self._batch_get([(pk, STATE_SK) for pk in order])}
        return [found[pk] for pk in order if pk in found], encode_cursor(last)

    def index_recipients(self, tenant_id: str, entries: Sequence[tuple[str, int, Sequence[str]]]) -> None:
        """Index messages by recipient: (message id, created ms, addresses) each; addresses lower-cased, the
        first ``MAX_INDEXED_RECIPIENTS`` of a message."""
        expires_at = clock.now_ts() + RECIPIENT_INDEX_TTL_SECONDS
        requests = []
        for message_id, created_ms, addresses in entries:
            for address in list(dict.fromkeys(a.lower() for a in addresses))[:MAX_INDEXED_RECIPIENTS]:
                item = {"pk": recipient_index_pk(tenant_id, address),
                        "sk": recipient_index_sk(address, created_ms, message_id), "message_id": message_id,
                        "created_ms": created_ms, "expires_at": expires_at}
                requests.append({"PutRequest": {"Item": marshal(item)}})
        self._batch_write(requests)

    def messages_to_recipient(self, tenant_id: str, address: str, *, limit: int, cursor: str | None,
                              created_from_ms: int | None = None, created_to_ms: int | None = None
                              ) -> tuple[list[tuple[str, int]], str | None]:
        """(message id, created ms) of messages indexed for ``address``, oldest first, within a creation-time
        range (inclusive, ms): one Query of one partition, never the tenant's history."""
        address = address.lower()
        pk = recipient_index_pk(tenant_id, address)
        low = recipient_index_sk(address, created_from_ms or 0)
        high = recipient_index_sk(address, MAX_CREATED_MS if created_to_ms is None else created_to_ms) + ID_AFTER_ALL
        start = _decode_key_cursor(cursor, partition=("pk", pk), sort_key="sk", fields={"pk", "sk"},
                                   bounds=(low, high))
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":p": {"S": pk}, ":lo": {"S": low}, ":hi": {"S": high}},
            "ProjectionExpression": "message_id, created_ms",
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._call("query", **kwargs)
        found = [(raw["message_id"]["S"], int(raw["created_ms"]["N"])) for raw in resp.get("Items", [])]
        return found, encode_cursor(resp.get("LastEvaluatedKey"))

    def message_census(self, tenant_id: str, *, limit: int) -> tuple[list[tuple[str, str, int]], bool]:
        """(id, status, created_ms) of the tenant's oldest ``limit`` messages, and whether more may exist.

        A bounded read for ``GET /status``: the creation-time index gives the keys oldest first, then only
        the status of each state item is read (eventually consistent, half the cost of the other reads).
        """
        gsi1pk = messages_gsi1pk(tenant_id)
        found: list[tuple[str, str, int]] = []
        start: dict[str, Any] | None = None
        while len(found) < limit:
            keys, start = self._query_keys("ByTenant", "gsi1pk", gsi1pk, limit=min(1000, limit - len(found)),
                                           start=start)
            created = {k["pk"]["S"]: created_ms_from_gsi1sk(k["gsi1sk"]["S"]) for k in keys}
            states = self._batch_get([(pk, STATE_SK) for pk in created], consistent=False, projection="pk, #s",
                                     names={"#s": "status"})
            found.extend((message_id_from_pk(s["pk"]), s["status"], created[s["pk"]]) for s in states)
            if not start:
                return found, False
        return found, True

    def recent_states(self, tenant_id: str, *, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """States of the tenant's newest messages (at most ``limit``), and whether older ones were left out."""
        keys, last = self._query_keys("ByTenant", "gsi1pk", messages_gsi1pk(tenant_id), limit=limit,
                                      forward=False)
        return self._batch_get([(k["pk"]["S"], STATE_SK) for k in keys]), last is not None

    def states_created_between(self, tenant_id: str, from_ms: int, to_ms: int, *, limit: int = 1000
                               ) -> list[dict[str, Any]]:
        """States of messages created in [from_ms, to_ms), oldest first (for the scheduler's reconciliation)."""
        resp = self._call(
            "query",
            IndexName="ByTenant",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": messages_gsi1pk(tenant_id)},
                                       ":lo": {"S": created_sk(from_ms)}, ":hi": {"S": created_sk(to_ms)}},
            Limit=limit,
        )
        order = [i["pk"]["S"] for i in resp.get("Items", [])]
        found = {s["pk"]: s for s in self._batch_get([(pk, STATE_SK) for pk in order])}
        return [found[pk] for pk in order if pk in found]
