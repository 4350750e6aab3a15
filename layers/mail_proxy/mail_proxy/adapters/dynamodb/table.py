"""The table's low-level plumbing, shared by every aggregate's items: marshalling, the one conditional write
(``_write_if``), the one batch read, batch writes and deletes, query pagination and listing cursors.

Throttling, after botocore's own retries, becomes a ``ThrottledError`` (a 429 at the API) in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mail_proxy.adapters.aws_clients import client
from mail_proxy.errors import InvalidInputError, ThrottledError

_THROTTLE_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def marshal(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB attribute values; ``None`` fields are left out (never stored as NULL)."""
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def attribute_value(value: Any) -> dict[str, Any]:
    """One plain value as a DynamoDB attribute value (for expression values)."""
    return cast(dict[str, Any], _serializer.serialize(_to_dynamo(value)))


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def unmarshal(item: dict[str, Any]) -> dict[str, Any]:
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


def item_key(pk: str, sk: str) -> dict[str, Any]:
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


class Table:
    """One DynamoDB table; the aggregates' item classes build on it."""

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

    def _batch_get(self, keys: Sequence[tuple[str, str]], *, consistent: bool = True,
                   projection: str | None = None, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The items at ``keys`` that exist (in no particular order): BatchGetItem in chunks of 100, retrying
        unprocessed keys; throttled if they never come back. ``projection``: only those attributes."""
        result: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 100):
            chunk: dict[str, Any] = {"Keys": [item_key(pk, sk) for pk, sk in unique[i : i + 100]]}
            if consistent:
                chunk["ConsistentRead"] = True
            if projection is not None:
                chunk["ProjectionExpression"] = projection
            if names:
                chunk["ExpressionAttributeNames"] = names
            request: dict[str, Any] = {self.table: chunk}
            for _attempt in range(10):
                resp = self._batch_call("batch_get_item", RequestItems=request)
                result.extend(unmarshal(item) for item in resp.get("Responses", {}).get(self.table, []))
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise ThrottledError("the table is busy, retry shortly", retry_after=2)
        return result

    def _batch_delete(self, keys: Sequence[tuple[str, str]]) -> None:
        unique = list(dict.fromkeys(keys))
        self._batch_write([{"DeleteRequest": {"Key": item_key(pk, sk)}} for pk, sk in unique])

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

