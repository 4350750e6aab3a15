"""The DynamoDB repository: the only module that knows keys and item shapes.

Every partition key starts with ``TENANT#<tenant id>``, so every read is scoped to one tenant by
construction (and IAM ``dynamodb:LeadingKeys`` could enforce it). Items:

- tenant ``TENANT#t / #TENANT`` (listed through ``ByTenant`` with ``gsi1pk=TENANTS``; found by token
  through the sparse ``ByToken`` index on ``token_hash``)
- account ``TENANT#t / ACCOUNT#<id>``
- message ``TENANT#t#MSG#<id>``: a small ``STATE`` item (status, attempts, lease, events) that every
  transition rewrites, and an immutable ``PAYLOAD#<version>`` item with the submitted fields, so updates
  stay cheap. Listed through ``ByTenant`` (``gsi1pk=TENANT#t#MSG``); waiting messages carry ``due_pk/due_sk``
  (sparse ``Due`` index) so the scheduler finds due, deferred and stale ones without scanning.
- reputation counters ``TENANT#t / REPUTATION#<hour start>`` (sends, hard bounces, complaints; see
  ``reputation``)
- command log ``TENANT#t#LOG / <ms>#<uuid>`` (all tenants through ``ByTenant`` with ``gsi1pk=COMMANDS``).
- recipient index ``TENANT#t#RCPT#<shard> / <address>#<created ms>#<message id>``: written at submission, one
  per recipient (the first ``MAX_INDEXED_RECIPIENTS``), so ``GET /messages?recipient=`` reads one partition
  range instead of the tenant's history; sixteen shards by address hash spread a large submission's writes
  and let the tenant's deletion find them all. Expires with ``RECIPIENT_INDEX_TTL_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mail_proxy.adapters.aws_clients import client
from mail_proxy.domain import clock
from mail_proxy.domain.message_lifecycle import Transition
from mail_proxy.domain.models import RETENTION_SECONDS, MessageStatus
from mail_proxy.errors import ConflictError, InvalidInputError, NotFoundError, ThrottledError

TENANT_SK = "#TENANT"
STATE_SK = "STATE"
PAYLOAD_PREFIX = "PAYLOAD#"
ACCOUNT_PREFIX = "ACCOUNT#"
SUPPRESSION_PREFIX = "SUPPRESS#"
MAILBOX_PREFIX = "#MAILBOX#"
PEC_WAIT_PREFIX = "PECWAIT#"
PEC_MSGID_PREFIX = "PECMSGID#"
REPUTATION_PREFIX = "REPUTATION#"
TENANTS_GSI1 = "TENANTS"
COMMANDS_GSI1 = "COMMANDS"
PAYLOAD_TTL_SECONDS = 30 * 24 * 3600
COMMAND_LOG_TTL_SECONDS = 400 * 24 * 3600
MAX_LOG_MS = 10**13 - 1
MAX_DUE_TS = 10**10 - 1
MAX_CREATED_MS = 10**13 - 1
ID_AFTER_ALL = "#\x7f"  # sorts after "#<any message id>" (ids are printable ASCII, up to "~")
RECIPIENT_SHARDS = 16
MAX_INDEXED_RECIPIENTS = 50
RECIPIENT_INDEX_TTL_SECONDS = PAYLOAD_TTL_SECONDS + RETENTION_SECONDS  # as long as a message's content, and its record
REPLACEABLE_STATUSES = (MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.ERROR)
_THROTTLE_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def message_pk(tenant_id: str, message_id: str) -> str:
    return f"TENANT#{tenant_id}#MSG#{message_id}"


def due_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}#DUE"


def due_sk(due_ts: int, message_id: str) -> str:
    # ten digits sort correctly until 2286; a later time (never accepted at the API) is clamped, not widened
    return f"{min(max(due_ts, 0), MAX_DUE_TS):010d}#{message_id}"


def held_pk(tenant_id: str) -> str:
    """Messages that wait for their tenant or batch to send again: in the Due index, outside the due partition,
    so any number of them never starves the scheduler's reading of what is due."""
    return f"TENANT#{tenant_id}#HELD"


def recipient_index_pk(tenant_id: str, address: str) -> str:
    shard = int(hashlib.sha256(address.encode("utf-8")).hexdigest()[:8], 16) % RECIPIENT_SHARDS
    return f"TENANT#{tenant_id}#RCPT#{shard:02d}"


def created_sk(created_ms: int) -> str:
    """13 digits sort correctly until 2286; a bound beyond is clamped so it never grows a 14th digit."""
    return f"{min(max(created_ms, 0), MAX_CREATED_MS):013d}"


def _marshal(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _unmarshal(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_dynamo(v) for v in value)
    return value


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    plain = {k: v["S"] for k, v in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None, *, expected_gsi1pk: str, bounds: tuple[str, str] | None = None
                  ) -> dict[str, Any] | None:
    """Cursors are opaque to clients; one made for another tenant's listing (or another date range) is
    refused."""
    return _decode_key_cursor(cursor, partition=("gsi1pk", expected_gsi1pk), sort_key="gsi1sk",
                              fields={"pk", "sk", "gsi1pk", "gsi1sk"}, bounds=bounds)


def _decode_key_cursor(cursor: str | None, *, partition: tuple[str, str], sort_key: str, fields: set[str],
                       bounds: tuple[str, str] | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError("cursor is malformed") from exc
    if not isinstance(plain, dict) or plain.get(partition[0]) != partition[1]:
        raise InvalidInputError("cursor does not belong to this listing")
    if set(plain) != fields or not all(isinstance(v, str) for v in plain.values()):
        raise InvalidInputError("cursor is malformed")
    if bounds is not None and not bounds[0] <= plain[sort_key] <= bounds[1]:
        raise InvalidInputError("cursor does not belong to this listing (its date range or recipient differ)")
    return {k: {"S": v} for k, v in plain.items()}


class MailRepository:
    """Data access for tenants, accounts, messages and the command log."""

    def __init__(self, table_name: str) -> None:
        self.table = table_name

    @property
    def ddb(self) -> Any:
        return client("dynamodb")

    def _write_if(self, operation: str, **kwargs: Any) -> Any:
        """A conditional write: the response, or None when its condition did not hold."""
        try:
            return self._call(operation, **kwargs) or {}
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._batch_call(operation, TableName=self.table, **kwargs)

    def _batch_call(self, operation: str, **kwargs: Any) -> Any:
        """Any call: throttling (after botocore's own retries) is a ThrottledError, a 429 at the API."""
        try:
            return getattr(self.ddb, operation)(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _THROTTLE_CODES:
                raise ThrottledError("the table is busy, retry shortly", retry_after=2) from exc
            raise

    # ------------------------------------------------------------------------------------- tenants

    def create_tenant(self, tenant: dict[str, Any], token_hash: str | None) -> None:
        tid = tenant["tenant_id"]
        item = {
            **tenant,
            "pk": tenant_pk(tid),
            "sk": TENANT_SK,
            "gsi1pk": TENANTS_GSI1,
            "gsi1sk": tid,
            "token_hash": token_hash,
        }
        if self._write_if("put_item", Item=_marshal(item), ConditionExpression="attribute_not_exists(pk)") is None:
            raise ConflictError(f"tenant '{tid}' already exists")

    def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), TENANT_SK), ConsistentRead=True)
        return _unmarshal(resp["Item"]) if "Item" in resp else None

    def require_tenant(self, tenant_id: str) -> dict[str, Any]:
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            raise NotFoundError(f"tenant '{tenant_id}' not found")
        return tenant

    def list_tenants(self) -> list[dict[str, Any]]:
        keys = [
            (k["pk"]["S"], k["sk"]["S"])
            for k in self._query_keys("ByTenant", "gsi1pk", TENANTS_GSI1, limit=None)[0]
        ]
        items = self._batch_get(keys)
        return sorted(items, key=lambda t: t["tenant_id"])

    def update_tenant(self, tenant_id: str, changes: dict[str, Any], removals: Sequence[str] = ()) -> None:
        sets = {**changes, "updated_at": clock.now_iso()}
        names = {f"#f{i}": k for i, k in enumerate(sets)}
        values = {f":v{i}": _serializer.serialize(_to_dynamo(v)) for i, v in enumerate(sets.values())}
        expr = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(sets)))
        if removals:
            offset = len(sets)
            names.update({f"#f{offset + i}": k for i, k in enumerate(removals)})
            expr += " REMOVE " + ", ".join(f"#f{offset + i}" for i in range(len(removals)))
        if self._write_if(
            "update_item",
            Key=_key(tenant_pk(tenant_id), TENANT_SK),
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
            pk = item["pk"]["S"]
            if item["sk"]["S"] == TENANT_SK and pk.startswith("TENANT#"):
                return pk.removeprefix("TENANT#")
        return None

    def replace_dkim_keys(self, tenant_id: str, expected: list[dict[str, Any]], keys: list[dict[str, Any]]
                          ) -> bool:
        """Write the tenant's DKIM keys (``dkim_keys``, a list on the tenant item, so the sender has them with
        the tenant) only if the list is still ``expected``: False when a concurrent change (another
        registration, a re-encryption) won; the caller reads again."""
        condition = "attribute_exists(pk) AND " + ("#k = :old" if expected else "attribute_not_exists(#k)")
        values: dict[str, Any] = {":u": {"S": clock.now_iso()}}
        if expected:
            values[":old"] = _serializer.serialize(_to_dynamo(expected))
        if keys:
            values[":new"] = _serializer.serialize(_to_dynamo(keys))
        update = "SET #u = :u, #k = :new" if keys else "SET #u = :u REMOVE #k"
        return self._write_if(
            "update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK), UpdateExpression=update,
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
            Key=_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        if resp is None:
            raise NotFoundError(f"tenant '{tenant_id}' not found")
        return list(_unmarshal(resp["Attributes"]).get("suspended_batches", []))

    def delete_tenant(self, tenant_id: str) -> int:
        """Remove the tenant, its accounts and its messages; the command log stays as an audit trail."""
        self.require_tenant(tenant_id)
        keys: list[tuple[str, str]] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}},
            ProjectionExpression="pk, sk",
        ):
            keys.extend((i["pk"]["S"], i["sk"]["S"]) for i in page)
        removed = 0
        cursor = None
        while True:
            msg_keys, cursor = self._query_keys("ByTenant", "gsi1pk", f"TENANT#{tenant_id}#MSG",
                                                 limit=500, start=cursor)
            ids = [k["pk"]["S"].split("#MSG#", 1)[1] for k in msg_keys]
            removed += self.delete_messages(tenant_id, ids)
            if not cursor:
                break
        for shard in range(RECIPIENT_SHARDS):  # the recipient index holds addresses: it goes with the tenant
            for page in self._paginate_query(
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": f"TENANT#{tenant_id}#RCPT#{shard:02d}"}},
                ProjectionExpression="pk, sk",
            ):
                keys.extend((i["pk"]["S"], i["sk"]["S"]) for i in page)
        # the tenant item last, so a failure half-way can be retried with the same call
        keys.sort(key=lambda k: k[1] == TENANT_SK)
        self._batch_delete(keys)
        return removed

    # ------------------------------------------------------------------------------------ accounts

    def put_account(self, tenant_id: str, account: dict[str, Any]) -> bool:
        """Create or replace; returns True if an account with that id existed."""
        item = {**account, "pk": tenant_pk(tenant_id), "sk": ACCOUNT_PREFIX + account["id"]}
        resp = self._call("put_item", Item=_marshal(item), ReturnValues="ALL_OLD")
        return "Attributes" in resp

    def get_account(self, tenant_id: str, account_id: str) -> dict[str, Any] | None:
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), ACCOUNT_PREFIX + account_id),
                          ConsistentRead=True)
        return _unmarshal(resp["Item"]) if "Item" in resp else None

    def list_accounts(self, tenant_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}, ":a": {"S": ACCOUNT_PREFIX}},
            ConsistentRead=True,
        ):
            items.extend(_unmarshal(i) for i in page)
        return items

    def delete_account(self, tenant_id: str, account_id: str) -> None:
        if self._write_if("delete_item", Key=_key(tenant_pk(tenant_id), ACCOUNT_PREFIX + account_id),
                          ConditionExpression="attribute_exists(pk)") is None:
            raise NotFoundError(f"account '{account_id}' not found")

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
        sk = ACCOUNT_PREFIX + account_id if account_id is not None else TENANT_SK
        return self._write_if(
            "update_item",
            Key=_key(tenant_pk(tenant_id), sk),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames={v: k for k, v in names.items()},
            ExpressionAttributeValues=values,
        ) is not None

    # ------------------------------------------------------------------------------------ messages

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
        self._batch_write([{"PutRequest": {"Item": _marshal(payload_item)}} for _s, payload_item in prepared])

        def write_state(index: int) -> bool:
            return self._write_if(
                "put_item",
                Item=_marshal(prepared[index][0]),
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
            elif old_version and PAYLOAD_PREFIX + old_version != payload_item["sk"]:
                stale.append((state_item["pk"], PAYLOAD_PREFIX + old_version))  # the replaced content
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
            "sk": PAYLOAD_PREFIX + version,
            "payload": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            # a held message's content has no expiry until the scheduler releases it
            "expires_at": None if state.get("held") else (
                max(state.get("deferred_ts") or 0, clock.now_ts()) + PAYLOAD_TTL_SECONDS),
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
            "gsi1pk": f"TENANT#{tenant_id}#MSG",
            "gsi1sk": f"{fields['created_ms']:013d}#{mid}",
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
                item = _unmarshal(raw)
                if item["sk"] == STATE_SK:
                    state = item
                elif item["sk"].startswith(PAYLOAD_PREFIX):
                    payloads[item["sk"].removeprefix(PAYLOAD_PREFIX)] = item
        if state is None:
            return None
        payload_item = payloads.get(state.get("payload_version", ""))
        return state, (json.loads(payload_item["payload"]) if payload_item else None)

    def get_payloads(self, tenant_id: str, states: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        keys = [(message_pk(tenant_id, s["id"]), PAYLOAD_PREFIX + s["payload_version"])
                for s in states if s.get("payload_version")]
        result: dict[str, dict[str, Any]] = {}
        for item in self._batch_get(keys):
            mid = item["pk"].split("#MSG#", 1)[1]
            result[mid] = json.loads(item["payload"])
        return result

    def list_message_states(self, tenant_id: str, *, limit: int, cursor: str | None,
                            created_from_ms: int | None = None, created_to_ms: int | None = None
                            ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the tenant's messages, oldest first; with a creation-time range (inclusive, in ms),
        only that range of the ``ByTenant`` index is read."""
        gsi1pk = f"TENANT#{tenant_id}#MSG"
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
                        "sk": f"{address}#{created_sk(created_ms)}#{message_id}", "message_id": message_id,
                        "created_ms": created_ms, "expires_at": expires_at}
                requests.append({"PutRequest": {"Item": _marshal(item)}})
        self._batch_write(requests)

    def messages_to_recipient(self, tenant_id: str, address: str, *, limit: int, cursor: str | None,
                              created_from_ms: int | None = None, created_to_ms: int | None = None
                              ) -> tuple[list[tuple[str, int]], str | None]:
        """(message id, created ms) of messages indexed for ``address``, oldest first, within a creation-time
        range (inclusive, ms): one Query of one partition, never the tenant's history."""
        address = address.lower()
        pk = recipient_index_pk(tenant_id, address)
        low = f"{address}#{created_sk(created_from_ms or 0)}"
        high = f"{address}#{created_sk(MAX_CREATED_MS if created_to_ms is None else created_to_ms)}{ID_AFTER_ALL}"
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
        gsi1pk = f"TENANT#{tenant_id}#MSG"
        found: list[tuple[str, str, int]] = []
        start: dict[str, Any] | None = None
        while len(found) < limit:
            keys, start = self._query_keys("ByTenant", "gsi1pk", gsi1pk, limit=min(1000, limit - len(found)),
                                           start=start)
            created = {k["pk"]["S"]: int(k["gsi1sk"]["S"].split("#", 1)[0]) for k in keys}
            pks = list(created)
            for i in range(0, len(pks), 100):
                request: dict[str, Any] = {self.table: {
                    "Keys": [_key(pk, STATE_SK) for pk in pks[i : i + 100]],
                    "ProjectionExpression": "pk, #s", "ExpressionAttributeNames": {"#s": "status"}}}
                for _attempt in range(10):
                    resp = self._batch_call("batch_get_item", RequestItems=request)
                    for item in resp.get("Responses", {}).get(self.table, []):
                        pk = item["pk"]["S"]
                        found.append((pk.split("#MSG#", 1)[1], item["status"]["S"], created[pk]))
                    request = resp.get("UnprocessedKeys") or {}
                    if not request:
                        break
                else:
                    raise ThrottledError("the table is busy, retry shortly", retry_after=2)
            if not start:
                return found, False
        return found, True

    def recent_states(self, tenant_id: str, *, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """States of the tenant's newest messages (at most ``limit``), and whether older ones were left out."""
        keys, last = self._query_keys("ByTenant", "gsi1pk", f"TENANT#{tenant_id}#MSG", limit=limit,
                                      forward=False)
        return self._batch_get([(k["pk"]["S"], STATE_SK) for k in keys]), last is not None

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
            try:
                old = self._call("delete_item", Key=_key(message_pk(tenant_id, mid), STATE_SK),
                                 ConditionExpression=condition, ExpressionAttributeNames={"#s": "status"},
                                 ExpressionAttributeValues=values, ReturnValues="ALL_OLD")
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                refused.append(mid)
                continue
            removed.append(mid)
            version = (old or {}).get("Attributes", {}).get("payload_version", {}).get("S")
            if version:
                # only the deleted message's own content: a resubmission of the id stored meanwhile is kept
                payloads.append((message_pk(tenant_id, mid), PAYLOAD_PREFIX + version))
        self._batch_delete(payloads)
        return removed, refused

    def waiting_message_keys(self, tenant_id: str, *, due_before: int | None = None
                             ) -> Iterator[tuple[int, str]]:
        """(due time, message id) of the tenant's waiting messages, earliest first."""
        cond = "due_pk = :p"
        values: dict[str, Any] = {":p": {"S": due_pk(tenant_id)}}
        if due_before is not None:
            cond += " AND due_sk < :d"
            values[":d"] = {"S": f"{due_before + 1:010d}"}
        for page in self._paginate_query(IndexName="Due", KeyConditionExpression=cond,
                                         ExpressionAttributeValues=values):
            for item in page:
                ts, _, mid = item["due_sk"]["S"].partition("#")
                yield int(ts), mid

    def set_due(self, tenant_id: str, message_id: str, due_ts: int) -> None:
        """Move a waiting message's next check time (only if it still exists)."""
        self._write_if(
            "update_item",
            Key=_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="SET due_pk = :p, due_sk = :s",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":p": {"S": due_pk(tenant_id)},
                                       ":s": {"S": due_sk(due_ts, message_id)}},
        )

    def clear_due(self, tenant_id: str, message_id: str) -> None:
        self._write_if(
            "update_item",
            Key=_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="REMOVE due_pk, due_sk",
            ConditionExpression="attribute_exists(pk)",
        )

    # ------------------------------------------------------------------------------------ delivery

    def apply_transition(self, tenant_id: str, message_id: str, transition: Transition, *, now: int) -> bool:
        """Apply one transition of a message's life as one conditional write; False if the stored state is not
        the one the transition expects (someone else changed, deleted or replaced the message meanwhile)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attr: str) -> str:
            if attr not in names:
                names[attr] = f"#n{len(names)}"
            return names[attr]

        def value(v: Any) -> str:
            placeholder = f":v{len(values)}"
            values[placeholder] = _serializer.serialize(_to_dynamo(v))
            return placeholder

        sets = [f"{name(k)} = {value(v)}" for k, v in transition.sets.items() if v is not None]
        sets.append(f"{name('updated_at')} = {value(clock.now_iso())}")
        removes = [k for k in transition.removes if k not in transition.sets]
        if transition.event is not None:
            sets.append(f"{name('events')} = list_append(if_not_exists({name('events')}, {value([])}), "
                        f"{value([dict(transition.event)])})")
        if transition.count_attempt:
            sets.append(f"{name('attempts')} = if_not_exists({name('attempts')}, {value(0)}) + {value(1)}")
        if transition.hold:
            sets += [f"{name('due_pk')} = {value(held_pk(tenant_id))}", f"{name('due_sk')} = {value(message_id)}"]
        elif transition.due_ts is not None:
            sets += [f"{name('due_pk')} = {value(due_pk(tenant_id))}",
                     f"{name('due_sk')} = {value(due_sk(transition.due_ts, message_id))}"]
        elif transition.leaves_due_index:
            removes += ["due_pk", "due_sk"]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(name(k) for k in dict.fromkeys(removes))

        expect = transition.expect
        status = name("status")
        conditions = ["attribute_exists(pk)",
                      f"{status} IN ({', '.join(value(str(s)) for s in expect.statuses)})"]
        if expect.payload_version is not None:
            conditions.append(f"{name('payload_version')} = {value(expect.payload_version)}")
        if expect.lease_owner is not None:
            conditions.append(f"{name('lease_owner')} = {value(expect.lease_owner)}")
        if expect.attempts is not None:
            attempts = name("attempts")
            equal = f"{attempts} = {value(expect.attempts)}"
            conditions.append(f"(attribute_not_exists({attempts}) OR {equal})" if expect.attempts == 0 else equal)
        if expect.due_by is not None:
            deferred_ts = name("deferred_ts")
            conditions.append(f"({status} <> {value(str(MessageStatus.DEFERRED))} OR attribute_not_exists("
                              f"{deferred_ts}) OR {deferred_ts} <= {value(expect.due_by)})")
        if expect.lease_expired_by is not None:
            conditions.append(f"{name('lease_until')} < {value(expect.lease_expired_by)}")
        applied = self._write_if(
            "update_item",
            Key=_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression=expression,
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames={placeholder: attr for attr, placeholder in names.items()},
            ExpressionAttributeValues=values,
        ) is not None
        if applied and transition.hold and expect.payload_version:
            self.set_payload_expiry(tenant_id, message_id, expect.payload_version, None)  # kept while held
        return applied

    def set_payload_expiry(self, tenant_id: str, message_id: str, payload_version: str, expires_at: int | None
                           ) -> None:
        """A held message's content must outlive the hold: no expiry while held, the usual one once released."""
        key = _key(message_pk(tenant_id, message_id), PAYLOAD_PREFIX + payload_version)
        if expires_at is None:
            self._write_if("update_item", Key=key, UpdateExpression="REMOVE expires_at",
                           ConditionExpression="attribute_exists(pk)")
        else:
            self._write_if("update_item", Key=key, UpdateExpression="SET expires_at = :e",
                           ConditionExpression="attribute_exists(pk)",
                           ExpressionAttributeValues={":e": {"N": str(expires_at)}})

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
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), "#SCHEDULER"), ConsistentRead=True,
                          ProjectionExpression="held_after")
        item = resp.get("Item") or {}
        return item["held_after"]["S"] if "held_after" in item else None

    def set_held_cursor(self, tenant_id: str, after: str | None) -> None:
        key = _key(tenant_pk(tenant_id), "#SCHEDULER")
        if after is None:
            self._call("update_item", Key=key, UpdateExpression="REMOVE held_after")
        else:
            self._call("update_item", Key=key, UpdateExpression="SET held_after = :a",
                       ExpressionAttributeValues={":a": {"S": after}})

    def reserve_sends(self, tenant_id: str, account_id: str, window: str, start: int, seconds: int,
                      wanted: int, limit: int) -> int:
        """Reserve up to ``wanted`` sends in one window of an account; returns how many were granted.

        Atomic across every sender: the counter only grows by an amount that keeps it within the limit.
        """
        key = _key(f"TENANT#{tenant_id}#RATE#{account_id}", f"{window}#{start}")
        want = min(wanted, limit)
        for _attempt in range(4):
            if want <= 0:
                break
            try:
                self._call(
                    "update_item",
                    Key=key,
                    UpdateExpression="ADD sent_count :k SET expires_at = :e",
                    ConditionExpression="attribute_not_exists(sent_count) OR sent_count <= :room",
                    ExpressionAttributeValues={":k": {"N": str(want)}, ":room": {"N": str(limit - want)},
                                               ":e": {"N": str(start + seconds + 3600)}},
                )
                return want
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            current = self._call("get_item", Key=key, ConsistentRead=True).get("Item", {})
            used = int(current.get("sent_count", {}).get("N", "0"))
            want = min(want, limit - used)
        return 0

    def release_sends(self, tenant_id: str, account_id: str, window: str, start: int, count: int) -> None:
        if count <= 0:
            return
        self._call(
            "update_item",
            Key=_key(f"TENANT#{tenant_id}#RATE#{account_id}", f"{window}#{start}"),
            UpdateExpression="ADD sent_count :k",
            ConditionExpression="attribute_exists(sent_count)",
            ExpressionAttributeValues={":k": {"N": str(-count)}},
        )

    def states_created_between(self, tenant_id: str, from_ms: int, to_ms: int, *, limit: int = 1000
                               ) -> list[dict[str, Any]]:
        """States of messages created in [from_ms, to_ms), oldest first (for the scheduler's reconciliation)."""
        resp = self._call(
            "query",
            IndexName="ByTenant",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": f"TENANT#{tenant_id}#MSG"},
                                       ":lo": {"S": f"{from_ms:013d}"}, ":hi": {"S": f"{to_ms:013d}"}},
            Limit=limit,
        )
        order = [i["pk"]["S"] for i in resp.get("Items", [])]
        found = {s["pk"]: s for s in self._batch_get([(pk, STATE_SK) for pk in order])}
        return [found[pk] for pk in order if pk in found]

    def get_scheduler_checkpoint(self, tenant_id: str) -> int | None:
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), "#SCHEDULER"), ConsistentRead=True)
        item = resp.get("Item")
        return int(item["checked_until_ms"]["N"]) if item and "checked_until_ms" in item else None

    def set_scheduler_checkpoint(self, tenant_id: str, checked_until_ms: int) -> None:
        self._call("put_item", Item=_marshal({"pk": tenant_pk(tenant_id), "sk": "#SCHEDULER",
                                              "checked_until_ms": checked_until_ms}))

    # ------------------------------------------------------------------------------------ reports

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
            Key=_key(message_pk(tenant_id, message_id), STATE_SK),
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
        self._write_if("update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK), UpdateExpression=expr,
                       ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues=values)

    def count_report_failure(self, tenant_id: str, record_id: str) -> int:
        """One more failed POST of a report record; returns how many that record has had.

        Counted on the tenant item because one record at a time is attempted per tenant (its FIFO group),
        and kept by the reporter rather than taken from SQS's receive count, so hides for quiet do not count.
        """
        key = _key(tenant_pk(tenant_id), TENANT_SK)
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
        self._write_if("update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="SET report_hidden_receipt = :h", ConditionExpression="attribute_exists(pk)",
                       ExpressionAttributeValues={":h": {"S": receipt_handle}})

    def end_report_wait(self, tenant_id: str) -> str | None:
        """End the quiet period; returns the receipt of the record hidden for quiet or backoff, if any."""
        resp = self._write_if("update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
                              UpdateExpression="REMOVE report_quiet_until, report_hidden_receipt",
                              ConditionExpression="attribute_exists(pk)", ReturnValues="UPDATED_OLD")
        hidden = (resp or {}).get("Attributes", {}).get("report_hidden_receipt")
        return str(hidden["S"]) if hidden else None

    def claim_pending_sync(self, tenant_id: str, sync_id: str, *, now: int, stale_before: int) -> bool:
        """Mark an empty sync as pending unless one is (and is not older than ``stale_before``)."""
        return self._write_if(
            "update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression="SET sync_pending = :id, sync_pending_ts = :now",
            ConditionExpression="attribute_exists(pk) AND "
                                "(attribute_not_exists(sync_pending) OR sync_pending_ts < :stale)",
            ExpressionAttributeValues={":id": {"S": sync_id}, ":now": {"N": str(now)},
                                       ":stale": {"N": str(stale_before)}},
        ) is not None

    def clear_pending_sync(self, tenant_id: str, sync_id: str) -> None:
        """The pending empty sync ``sync_id`` was processed (or never queued); another may be queued."""
        self._write_if("update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="REMOVE sync_pending, sync_pending_ts",
                       ConditionExpression="sync_pending = :id",
                       ExpressionAttributeValues={":id": {"S": sync_id}})


    # ------------------------------------------------------------------------------------ returned mail
    # Items under the tenant's own partition, so they go with the tenant: ``SUPPRESS#<address>``
    # (suppression list), ``#MAILBOX#<name>`` (where a bounce or PEC mailbox was read up to), and for PEC
    # messages ``PECWAIT#<sent ts>#<id>`` (awaiting acceptance) and ``PECMSGID#<Message-ID>`` (the receipts'
    # link back to the message).

    def get_mailbox_position(self, tenant_id: str, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID processed) of a polled mailbox, or None before its first poll."""
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), MAILBOX_PREFIX + mailbox), ConsistentRead=True)
        item = resp.get("Item")
        if not item:
            return None
        return int(item["uidvalidity"]["N"]), int(item["last_uid"]["N"])

    def save_mailbox_position(self, tenant_id: str, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        """Move a mailbox's position forward (never back within one UIDVALIDITY: a slower poller loses)."""
        self._write_if(
            "put_item",
            Item=_marshal({"pk": tenant_pk(tenant_id), "sk": MAILBOX_PREFIX + mailbox, "uidvalidity": uidvalidity,
                           "last_uid": last_uid, "polled_ts": clock.now_ts()}),
            ConditionExpression="attribute_not_exists(pk) OR uidvalidity <> :v OR last_uid <= :u",
            ExpressionAttributeValues={":v": {"N": str(uidvalidity)}, ":u": {"N": str(last_uid)}},
        )

    def count_mailbox_failure(self, tenant_id: str, mailbox: str, uidvalidity: int, uid: int) -> int:
        """One more poll that failed on this mail; how many did in a row (moving the position forgets them)."""
        key = _key(tenant_pk(tenant_id), MAILBOX_PREFIX + mailbox)
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

    def put_suppression(self, tenant_id: str, entry: dict[str, Any], *, keep_longer: bool = False) -> None:
        """Add or refresh a suppressed address (``expires_at`` is the table's TTL attribute).

        ``keep_longer``: an entry for every message that already lasts longer (a manual one) is left as it
        is; an entry scoped to lists is replaced (this one blocks every message).
        """
        item = _marshal({**entry, "pk": tenant_pk(tenant_id), "sk": SUPPRESSION_PREFIX + entry["address"].lower()})
        if not keep_longer:
            self._call("put_item", Item=item)
            return
        self._write_if("put_item", Item=item,
                       ConditionExpression="attribute_not_exists(pk) OR expires_at < :e OR attribute_exists(lists)",
                       ExpressionAttributeValues={":e": {"N": str(entry["expires_at"])}})

    def add_suppressed_list(self, tenant_id: str, entry: dict[str, Any], list_id: str) -> None:
        """Suppress an address for the messages of one more list (``lists``, a string set), unless a live
        entry already blocks every message; an expired entry is replaced, its lists forgotten."""
        pk, sk = tenant_pk(tenant_id), SUPPRESSION_PREFIX + entry["address"].lower()
        fields = {k: v for k, v in entry.items() if k != "address" and v is not None}
        now = {":now": {"N": str(clock.now_ts())}}
        added = self._write_if(
            "update_item", Key=_key(pk, sk),
            UpdateExpression="ADD lists :l SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression="attribute_exists(lists) AND expires_at >= :now",
            ExpressionAttributeNames={f"#f{i}": name for i, name in enumerate(fields)},
            ExpressionAttributeValues={":l": {"SS": [list_id]}, **now,
                                       **{f":f{i}": v for i, v in enumerate(_marshal(fields).values())}})
        if added is None:
            self._write_if("put_item", Item=_marshal({**entry, "lists": {list_id}, "pk": pk, "sk": sk}),
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
            kwargs["ExclusiveStartKey"] = _key(tenant_pk(tenant_id), SUPPRESSION_PREFIX + after.lower())
        items: list[dict[str, Any]] = []
        last: str | None = None
        for _page in range(20):
            kwargs["Limit"] = limit - len(items)
            resp = self._call("query", **kwargs)
            for raw in resp.get("Items", []):
                item = _unmarshal(raw)
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
        keys = [(tenant_pk(tenant_id), SUPPRESSION_PREFIX + a.lower()) for a in addresses]
        now = clock.now_ts()
        return {item["sk"].removeprefix(SUPPRESSION_PREFIX): item for item in self._batch_get(keys, consistent=False)
                if int(item.get("expires_at") or now + 1) > now}

    def mark_has_suppressions(self, tenant_id: str) -> None:
        """Flag the tenant as having a suppression list, so the sender reads it only for such tenants."""
        self._write_if("update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
                       UpdateExpression="SET has_suppressions = :t",
                       ConditionExpression="attribute_exists(pk) AND attribute_not_exists(has_suppressions)",
                       ExpressionAttributeValues={":t": {"BOOL": True}})

    def delete_suppression(self, tenant_id: str, address: str) -> bool:
        resp = self._call("delete_item", Key=_key(tenant_pk(tenant_id), SUPPRESSION_PREFIX + address.lower()),
                          ReturnValues="ALL_OLD")
        old = _unmarshal(resp["Attributes"]) if "Attributes" in resp else None
        return old is not None and int(old.get("expires_at") or clock.now_ts() + 1) > clock.now_ts()

    def add_inbound_event(self, tenant_id: str, message_id: str, event: dict[str, Any], receipt_key: str, *,
                          seen_status: str, new_status: str | None = None) -> bool:
        """Append an event that came back by mail (bounce, PEC receipt), once per ``receipt_key``.

        Conditional on the status the caller read, so a concurrent change (the sender's own write) is never
        overwritten; False means the condition failed: re-read and decide again.
        """
        sets = ["#e = list_append(if_not_exists(#e, :empty), :ev)",
                "#r = list_append(if_not_exists(#r, :empty), :rl)", "updated_at = :u"]
        values: dict[str, Any] = {
            ":empty": {"L": []}, ":ev": {"L": [_serializer.serialize(_to_dynamo(event))]},
            ":rl": {"L": [{"S": receipt_key}]}, ":rid": {"S": receipt_key}, ":u": {"S": clock.now_iso()},
            ":seen": {"S": seen_status},
        }
        if new_status is not None:
            sets.append("#s = :new")
            values[":new"] = {"S": new_status}
        return self._write_if(
            "update_item",
            Key=_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(pk) AND #s = :seen AND NOT contains(#r, :rid)",
            ExpressionAttributeNames={"#e": "events", "#r": "inbound_ids", "#s": "status"},
            ExpressionAttributeValues=values,
        ) is not None

    def watch_pec_message(self, tenant_id: str, message_id: str, *, sent_ts: int, message_id_header: str | None,
                          expires_at: int) -> None:
        """Remember a message sent through a PEC account until its acceptance (or timeout) is settled."""
        pk = tenant_pk(tenant_id)
        items = [{"pk": pk, "sk": f"{PEC_WAIT_PREFIX}{sent_ts:010d}#{message_id}", "message_id": message_id,
                  "expires_at": expires_at}]
        if message_id_header:
            items.append({"pk": pk, "sk": PEC_MSGID_PREFIX + message_id_header, "message_id": message_id,
                          "expires_at": expires_at})
        for item in items:
            self._call("put_item", Item=_marshal(item))

    def pec_messages_sent_before(self, tenant_id: str, sent_before: int, *, limit: int = 200
                                 ) -> list[tuple[int, str]]:
        """(sent ts, message id) of PEC messages still awaiting acceptance that were sent before a time."""
        resp = self._call(
            "query",
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}, ":lo": {"S": PEC_WAIT_PREFIX},
                                       ":hi": {"S": f"{PEC_WAIT_PREFIX}{max(sent_before, 0):010d}"}},
            Limit=limit,
        )
        found = []
        for raw in resp.get("Items", []):
            ts, _, mid = raw["sk"]["S"].removeprefix(PEC_WAIT_PREFIX).partition("#")
            found.append((int(ts), mid))
        return found

    def forget_pec_wait(self, tenant_id: str, sent_ts: int, message_id: str) -> None:
        self._call("delete_item", Key=_key(tenant_pk(tenant_id), f"{PEC_WAIT_PREFIX}{sent_ts:010d}#{message_id}"))

    def message_id_for_header(self, tenant_id: str, message_id_header: str) -> str | None:
        """The message a PEC receipt's ``X-Riferimento-Message-ID`` points at (within this tenant only)."""
        resp = self._call("get_item", Key=_key(tenant_pk(tenant_id), PEC_MSGID_PREFIX + message_id_header),
                          ConsistentRead=True)
        item = resp.get("Item")
        return item["message_id"]["S"] if item else None

    # ``REPUTATION#<hour start>`` items under the tenant's partition: the reputation guard's counters for one
    # hour (``sent``, ``bounced``, ``complained``, and ``<kind>@<account id>``), expired by the table's TTL.

    def add_reputation_counts(self, tenant_id: str, bucket: int, counters: dict[str, int], *,
                              expires_at: int) -> None:
        """Add to one hour's counters (atomic ``ADD``: every sender and poller adds to the same item)."""
        names = {f"#c{i}": name for i, name in enumerate(counters)}
        values = {f":n{i}": {"N": str(int(n))} for i, n in enumerate(counters.values())}
        self._call("update_item", Key=_key(tenant_pk(tenant_id), f"{REPUTATION_PREFIX}{bucket:010d}"),
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
                                       ":lo": {"S": f"{REPUTATION_PREFIX}{max(since, 0):010d}"},
                                       ":hi": {"S": f"{REPUTATION_PREFIX}{MAX_DUE_TS:010d}"}},
            ConsistentRead=True,
        ):
            for raw in page:
                item = _unmarshal(raw)
                item["bucket"] = int(item.pop("sk").removeprefix(REPUTATION_PREFIX))
                for attr in ("pk", "expires_at"):
                    item.pop(attr, None)
                found.append(item)
        return found

    def update_tenant_unless_set(self, tenant_id: str, changes: dict[str, Any], attribute: str) -> bool:
        """Write ``changes`` only while ``attribute`` is absent from the tenant: True when this call set it, so
        what follows a state change (a metric, an audit entry) happens once however many pollers judge."""
        names = {f"#f{i}": k for i, k in enumerate(changes)} | {"#flag": attribute}
        values = {f":v{i}": _serializer.serialize(_to_dynamo(v)) for i, v in enumerate(changes.values())}
        return self._write_if(
            "update_item", Key=_key(tenant_pk(tenant_id), TENANT_SK),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#flag)",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        ) is not None

    # ------------------------------------------------------------------------------------ command log

    def log_command(self, tenant_id: str | None, command: str, payload: dict[str, Any], outcome: str,
                    status: int) -> None:
        now = clock.now()
        ms = int(now * 1000)
        scope = tenant_id or "-"
        entry_id = uuid.uuid4().hex[:16]
        item = {
            "pk": f"TENANT#{scope}#LOG",
            "sk": f"{ms:013d}#{entry_id}",
            "gsi1pk": COMMANDS_GSI1,
            "gsi1sk": f"{ms:013d}#{entry_id}",
            "id": entry_id,
            "command_ts": int(now),
            "command": command,
            "tenant_id": tenant_id,
            "payload": json.dumps(payload, separators=(",", ":"), default=str)[:8000],
            "outcome": outcome,
            "response_status": status,
            "expires_at": int(now) + COMMAND_LOG_TTL_SECONDS,
        }
        self._call("put_item", Item=_marshal(item))

    def list_commands(self, tenant_id: str | None, *, since_ts: int | None, until_ts: int | None,
                      limit: int) -> list[dict[str, Any]]:
        # sort keys are 13-digit milliseconds: clamp so a bound never grows a 14th digit (which sorts wrong)
        low = f"{min((since_ts or 0) * 1000, MAX_LOG_MS):013d}"
        high = f"{min((until_ts + 1) * 1000, MAX_LOG_MS) if until_ts is not None else MAX_LOG_MS:013d}"
        if tenant_id:
            resp = self._call(
                "query",
                KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":p": {"S": f"TENANT#{tenant_id}#LOG"}, ":lo": {"S": low},
                                           ":hi": {"S": high}},
                ScanIndexForward=False,
                Limit=limit,
            )
            items = [_unmarshal(i) for i in resp.get("Items", [])]
        else:
            resp = self._call(
                "query",
                IndexName="ByTenant",
                KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":p": {"S": COMMANDS_GSI1}, ":lo": {"S": low}, ":hi": {"S": high}},
                ScanIndexForward=False,
                Limit=limit,
            )
            order = [(i["pk"]["S"], i["sk"]["S"]) for i in resp.get("Items", [])]
            found = {(i["pk"], i["sk"]): i for i in self._batch_get(order)}
            items = [found[k] for k in order if k in found]
        return items

    # ------------------------------------------------------------------------------------ plumbing

    def _paginate_query(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        start = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self._call("query", **kwargs)
            yield resp.get("Items", [])
            start = resp.get("LastEvaluatedKey")
            if not start:
                return

    def _query_keys(self, index: str, key_attr: str, value: str, *, limit: int | None,
                    start: dict[str, Any] | None = None, forward: bool = True
                    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"{key_attr} = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
            "ScanIndexForward": forward,
        }
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self._call("query", **kwargs)
            items.extend(resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if not start or (limit is not None and len(items) >= limit):
                return items, start

    def _batch_get(self, keys: Sequence[tuple[str, str]], *, consistent: bool = True) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {"Keys": [_key(pk, sk) for pk, sk in unique[i : i + 100]], "ConsistentRead": consistent}
            }
            for _attempt in range(10):
                resp = self._batch_call("batch_get_item", RequestItems=request)
                result.extend(_unmarshal(item) for item in resp.get("Responses", {}).get(self.table, []))
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise ThrottledError("the table is busy, retry shortly", retry_after=2)
        return result

    def _batch_delete(self, keys: Sequence[tuple[str, str]]) -> None:
        unique = list(dict.fromkeys(keys))
        self._batch_write([{"DeleteRequest": {"Key": _key(pk, sk)}} for pk, sk in unique])

    def _batch_write(self, requests: Sequence[dict[str, Any]]) -> None:
        """BatchWriteItem in chunks of 25, retrying unprocessed items; throttled if they never go through."""
        for i in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: list(requests[i : i + 25])}
            for attempt in range(10):
                resp = self._batch_call("batch_write_item", RequestItems=pending)
                pending = resp.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise ThrottledError("the table is busy, retry shortly", retry_after=2)


def state_change_from_stream(record: dict[str, Any]) -> StateChange | None:
    """The events a stream record of a message STATE item added (None for any other item)."""
    data = record.get("dynamodb") or {}
    new_raw = data.get("NewImage")
    if not new_raw or new_raw.get("sk", {}).get("S") != STATE_SK:
        return None
    new = _unmarshal(new_raw)
    old = _unmarshal(data["OldImage"]) if data.get("OldImage") else {}
    if old.get("payload_version") and old.get("payload_version") != new.get("payload_version"):
        old = {}  # the message was replaced: its event list started over
    seen = {e.get("event_id") for e in old.get("events") or []}
    added = [(i, e) for i, e in enumerate(new.get("events") or []) if e.get("event_id") not in seen]
    if not added:
        return None
    return StateChange(tenant_id=new["tenant_id"], message_id=new["id"], status=new.get("status", ""),
                       events=added)


def removed_payload_from_stream(record: dict[str, Any]) -> dict[str, Any] | None:
    """The stored payload of a message's payload item that was deleted (replaced, deleted, or expired by its
    TTL), from its stream record; None for any other record."""
    data = record.get("dynamodb") or {}
    old = data.get("OldImage")
    if record.get("eventName") != "REMOVE" or not old or not old.get("sk", {}).get("S", "").startswith(PAYLOAD_PREFIX):
        return None
    try:
        stored = json.loads(old.get("payload", {}).get("S", ""))
    except ValueError:
        return None
    return stored if isinstance(stored, dict) else None


@dataclass(frozen=True)
class StateChange:
    tenant_id: str
    message_id: str
    status: str
    events: list[tuple[int, dict[str, Any]]]
