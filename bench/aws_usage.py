"""Counts every boto3 call by phase, service and operation, and estimates what AWS would bill for it.

Installed by patching ``botocore.client.BaseClient._make_api_call`` (every client, whoever made it: the
layer's ``aws_clients.client``, the local poller's, moto's mock included). Two modes:

- counting (cheap, used while throughput is timed): calls per operation; SQS billed requests (a request is
  billed per started 64 KB of payload); receives that came back empty.
- accounting (``accounting=True``, used by the cost run): also DynamoDB request units, estimated from item
  sizes read from moto's in-memory table before and after each write (``mock_aws`` in this process only).

DynamoDB capacity, as the DynamoDB developer guide describes it (on-demand bills the same units):
- item size = sum over attributes of name bytes + value bytes; strings and binaries their length, numbers
  1 byte per two significant digits + 1, booleans and nulls 1, lists and maps 3 bytes + 1 per element + the
  elements; sets the sum of their elements;
- writes (PutItem, UpdateItem, DeleteItem, each item of BatchWriteItem): ceil(size / 1 KB) write units of the
  larger of the item before and after (a failed condition still consumes them); transactions double;
- reads: GetItem and each BatchGetItem key ceil(size / 4 KB), at least 1, halved when eventually consistent
  (a missing item still costs the minimum); Query ceil(sum of sizes / 4 KB) over all items read, halved when
  eventually consistent (index queries always are);
- global secondary indexes: an index write happens when an item enters the index (its key attributes become
  present), leaves it, or changes index key (two writes: delete + put), or when a projected non-key attribute
  changes; each sized ceil((index keys + table keys + projected attributes + 100 bytes) / 1 KB). With
  KEYS_ONLY indexes, rewriting an item whose index keys stay the same costs nothing in the index.
Not counted: stream reads by Lambda (free), TTL deletes (free), storage and backups (per GB-month).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

SQS_CHUNK = 64 * 1024
WRITE_UNIT = 1024
READ_UNIT = 4096
INDEX_ENTRY_OVERHEAD = 100
DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


# -------------------------------------------------------------------------------------------------- item sizes

def number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (max(len(digits), 1) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind in ("S", "B"):
        return len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    if kind == "N":
        return number_size(str(raw))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in raw.items())
    if kind in ("SS", "BS"):
        return sum(len(v.encode("utf-8")) if isinstance(v, str) else len(v) for v in raw)
    if kind == "NS":
        return sum(number_size(str(v)) for v in raw)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT))


# -------------------------------------------------------------------------------------------------- the recorder

@dataclass
class OperationUsage:
    calls: int = 0
    billed_requests: int = 0  # SQS: 64 KB chunks; others: calls
    empty: int = 0  # SQS receives that returned nothing
    items: int = 0  # DynamoDB items written or read
    item_bytes: int = 0  # their sizes (the larger of before/after for writes)
    wru_table: float = 0.0
    wru_index: float = 0.0
    index_writes: int = 0
    rru: float = 0.0
    seconds: float = 0.0  # wall time inside the call (moto's work, in this process)


@dataclass
class AwsUsage:
    """``with usage.installed(): ...``; ``usage.phase = "submit"`` labels the calls that follow."""

    accounting: bool = False
    phase: str = "setup"
    operations: dict[tuple[str, str, str], OperationUsage] = field(
        default_factory=lambda: defaultdict(OperationUsage))
    overhead_seconds: float = 0.0  # time spent estimating (subtracted from handler durations)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def installed(self) -> Iterator[AwsUsage]:
        original = BaseClient._make_api_call
        usage = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            return usage._record(original, client, operation, params)

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    # --- queries ------------------------------------------------------------------------------------------

    def by_phase(self, *phases: str) -> dict[tuple[str, str], OperationUsage]:
        """Usage per (service, operation), summed over the given phases."""
        total: dict[tuple[str, str], OperationUsage] = defaultdict(OperationUsage)
        for (phase, service, operation), usage in self.operations.items():
            if phase in phases:
                into = total[(service, operation)]
                for name in OperationUsage.__dataclass_fields__:
                    setattr(into, name, getattr(into, name) + getattr(usage, name))
        return dict(total)

    def calls(self, *phases: str) -> Counter[str]:
        return Counter({f"{s}.{o}": u.calls for (s, o), u in self.by_phase(*phases).items()})

    # --- recording ----------------------------------------------------------------------------------------

    def _record(self, original: Any, client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        label = operation
        if service == "sqs" and str(params.get("QueueUrl", "")).endswith(".fifo"):
            label = f"{operation}.fifo"  # FIFO queues have their own price
        key = (self.phase, service, label)
        if not self.accounting or service != "dynamodb":
            started = time.perf_counter()
            try:
                response = original(client, operation, params)
            finally:
                spent = time.perf_counter() - started
            with self._lock:
                usage = self.operations[key]
                usage.calls += 1
                usage.seconds += spent
                usage.billed_requests += _sqs_billed(operation, params, response) if service == "sqs" else 1
                if service == "sqs" and operation == "ReceiveMessage" and not response.get("Messages"):
                    usage.empty += 1
            return response
        return self._record_dynamodb(original, client, operation, params, key)

    def _record_dynamodb(self, original: Any, client: Any, operation: str, params: dict[str, Any],
                         key: tuple[str, str, str]) -> Any:
        started = time.perf_counter()
        backend = _moto_backend(client.meta.region_name)
        befores = _before_images(backend, operation, params) if operation in DDB_WRITES else []
        spent = time.perf_counter() - started
        failed = False
        called = time.perf_counter()
        try:
            response = original(client, operation, params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            failed, response = True, None
        started = time.perf_counter()
        try:
            self._account(backend, operation, params, response, befores, failed, key, started - called)
        finally:
            with self._lock:
                self.overhead_seconds += spent + time.perf_counter() - started
        if failed:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException",
                                         "Message": "The conditional request failed"}}, operation)
        return response

    def _account(self, backend: Any, operation: str, params: dict[str, Any], response: Any,
                 befores: list[tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]],
                 failed: bool, key: tuple[str, str, str], seconds: float) -> None:
        items = 0
        item_bytes = 0
        wru = 0.0
        wru_index = 0.0
        index_writes = 0
        rru = 0.0
        if operation in DDB_WRITES:
            factor = 2 if operation == "TransactWriteItems" else 1
            for table, item_key, before, after in befores:
                if operation in ("UpdateItem",) and not failed:
                    after = _current(backend, table, item_key)
                if failed:
                    after = before
                size = max(item_size(before), item_size(after))
                items += 1
                item_bytes += size
                wru += factor * write_units(size)
                for entry_size in _index_writes(backend, table, before, after):
                    index_writes += 1
                    wru_index += factor * write_units(entry_size)
        elif operation == "GetItem":
            consistent = bool(params.get("ConsistentRead"))
            size = item_size((response or {}).get("Item"))
            items, item_bytes = 1, size
            rru = _read_units(size, consistent)
        elif operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                consistent = bool(request.get("ConsistentRead"))
                found = {_key_tuple(backend, table, i): i for i in (response or {}).get("Responses", {}).get(table, [])}
                for wanted in request["Keys"]:
                    size = item_size(found.get(_key_tuple(backend, table, wanted)))
                    items += 1
                    item_bytes += size
                    rru += _read_units(size, consistent)
        elif operation in ("Query", "Scan"):
            index = params.get("IndexName")
            consistent = (bool(params.get("ConsistentRead"))
                          and not _is_global_index(backend, params["TableName"], index))
            returned = (response or {}).get("Items", [])
            if params.get("ProjectionExpression") and not index:
                # a projection does not make the read cheaper: the whole items are read
                returned = [_current(backend, params["TableName"], i) or i for i in returned]
            size = sum(item_size(i) for i in returned)
            items, item_bytes = len(returned), size
            rru = max(1, math.ceil(size / READ_UNIT)) * (1.0 if consistent else 0.5)
        with self._lock:
            usage = self.operations[key]
            usage.calls += 1
            usage.seconds += seconds
            usage.billed_requests += 1
            usage.items += items
            usage.item_bytes += item_bytes
            usage.wru_table += wru
            usage.wru_index += wru_index
            usage.index_writes += index_writes
            usage.rru += rru


def _sqs_billed(operation: str, params: dict[str, Any], response: dict[str, Any]) -> int:
    """SQS bills each request per started 64 KB of payload (sent or received)."""
    if operation == "SendMessageBatch":
        size = sum(len(e.get("MessageBody", "").encode()) for e in params.get("Entries", []))
    elif operation == "SendMessage":
        size = len(params.get("MessageBody", "").encode())
    elif operation == "ReceiveMessage":
        size = sum(len(m.get("Body", "").encode()) for m in response.get("Messages") or [])
    else:
        size = 0
    return max(1, math.ceil(size / SQS_CHUNK))


def _read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / READ_UNIT)) * (1.0 if consistent else 0.5)


# -------------------------------------------------------------------------------------------------- moto access

def _moto_backend(region: str) -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][region]


def _table(backend: Any, name: str) -> Any:
    return backend.get_table(name)


def _key_of(backend: Any, table_name: str, item: dict[str, Any]) -> dict[str, Any]:
    table = _table(backend, table_name)
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return {n: item[n] for n in names if n in item}


def _key_tuple(backend: Any, table_name: str, item: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in _key_of(backend, table_name, item).values())


def _current(backend: Any, table_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        found = backend.get_item(table_name, _key_of(backend, table_name, key))
    except Exception:
        return None
    if found is None:
        return None
    attributes: dict[str, Any] = found.to_json()["Attributes"]
    return attributes


def _before_images(backend: Any, operation: str, params: dict[str, Any]
                   ) -> list[tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]]:
    """(table, key, item before, item after if known from the request) for every item a write touches."""
    out: list[tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]] = []
    if operation == "PutItem":
        out.append((params["TableName"], params["Item"], None, params["Item"]))
    elif operation in ("UpdateItem", "DeleteItem"):
        out.append((params["TableName"], params["Key"], None, None))
    elif operation == "BatchWriteItem":
        for table, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    out.append((table, request["PutRequest"]["Item"], None, request["PutRequest"]["Item"]))
                else:
                    out.append((table, request["DeleteRequest"]["Key"], None, None))
    elif operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            for kind, body in entry.items():
                item = body.get("Item")
                out.append((body["TableName"], item or body["Key"], None, item if kind == "Put" else None))
    return [(table, key, _current(backend, table, key), after) for table, key, _, after in out]


def _is_global_index(backend: Any, table_name: str, index: str | None) -> bool:
    if not index:
        return False
    return any(i.name == index for i in _table(backend, table_name).global_indexes)


def _index_writes(backend: Any, table_name: str, before: dict[str, Any] | None,
                  after: dict[str, Any] | None) -> list[int]:
    """Sizes of the index entries a write puts or deletes, one per index write."""
    table = _table(backend, table_name)
    table_keys = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    sizes: list[int] = []
    for index in table.global_indexes:
        index_keys = [k["AttributeName"] for k in index.schema]
        projection = index.projection or {}
        kind = projection.get("ProjectionType", "ALL")

        def entry(item: dict[str, Any] | None, keys: list[str] = index_keys, kind: str = kind,
                  projection: dict[str, Any] = projection) -> dict[str, Any] | None:
            if item is None or any(k not in item for k in keys):
                return None
            if kind == "ALL":
                return dict(item)
            names = set(keys) | set(table_keys) | set(projection.get("NonKeyAttributes", []) if kind == "INCLUDE"
                                                       else [])
            return {n: v for n, v in item.items() if n in names}

        old, new = entry(before), entry(after)
        if old is None and new is None:
            continue
        if old is None or new is None:
            sizes.append(item_size(old or new) + INDEX_ENTRY_OVERHEAD)
        elif any(old[k] != new[k] for k in index_keys):
            sizes += [item_size(old) + INDEX_ENTRY_OVERHEAD, item_size(new) + INDEX_ENTRY_OVERHEAD]
        elif old != new:
            sizes.append(item_size(new) + INDEX_ENTRY_OVERHEAD)
    return sizes
