"""Feeds a DynamoDB stream to a function the way Lambda's stream event source mapping does.

Records arrive in order, in batches; a handler exception retries the same batch, and with
`ReportBatchItemFailures` processing resumes from the lowest failed sequence number, so a record is never
skipped because a later one failed. After `MaximumRetryAttempts` (-1: until stopped) the batch is dropped
and logged, as Lambda would send it to the on-failure destination. With a batching window
(`MaximumBatchingWindowInSeconds`), records are gathered until the batch is full or the window since the first
of them has passed, as the event source mapping does.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import boto3

from local.event_filter import matches_any
from local.lambdas import LocalFunction
from local.poller import every_record_failed
from local.template import LOCAL_REGION

log = logging.getLogger("local.streams")

_MAX_BACKOFF_SECONDS = 30.0
_now = time.monotonic  # batching windows are measured with this (tests replace it)


def _lambda_json(value: Any) -> Any:
    """Turns what boto3 parsed back into the JSON Lambda puts in the event (binary as base64, times as
    epoch seconds)."""
    if isinstance(value, dict):
        return {key: _lambda_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_lambda_json(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def stream_record(record: dict[str, Any], stream_arn: str, region: str = LOCAL_REGION) -> dict[str, Any]:
    """One record of the Lambda DynamoDB stream event, built from a GetRecords result."""
    event = _lambda_json(record)
    event.update({"eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": region})
    event["eventSourceARN"] = stream_arn
    return event


def retry_position(records: Sequence[dict[str, Any]], result: Any, partial: bool) -> str | None:
    """The sequence number to resume from after an invocation, or None if the batch succeeded."""
    if not partial or not isinstance(result, dict) or not result.get("batchItemFailures"):
        return None
    sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
    failed: list[str] = []
    for failure in result["batchItemFailures"]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in sequence_numbers:
            log.warning("batchItemFailures names %r, not a record of the batch: whole batch retried", identifier)
            return sequence_numbers[0]
        failed.append(str(identifier))
    return min(failed, key=int)


class StreamPoller:
    """Reads the (single-shard, as in moto) stream of a table and invokes `function` with batches."""

    def __init__(
        self,
        function: LocalFunction,
        stream_arn: str,
        *,
        batch_size: int = 100,
        report_batch_item_failures: bool = False,
        starting_position: str = "TRIM_HORIZON",
        maximum_retry_attempts: int = -1,
        filter_patterns: Sequence[Any] = (),
        idle_seconds: float = 0.25,
        batching_window: float = 0.0,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.function = function
        self.stream_arn = stream_arn
        self.batch_size = min(batch_size, 1000)
        self.report_batch_item_failures = report_batch_item_failures
        self.starting_position = starting_position
        self.maximum_retry_attempts = maximum_retry_attempts
        self.filter_patterns = list(filter_patterns)
        self.idle_seconds = idle_seconds
        self.batching_window = batching_window
        self.stop_event = threading.Event()
        self._client_factory = client_factory or (lambda: boto3.client("dynamodbstreams", region_name=LOCAL_REGION))
        self._thread: threading.Thread | None = None
        self._iterator: str | None = None
        self._shard_id: str | None = None
        self._attempts = 0
        self._gathered: list[dict[str, Any]] = []  # read, waiting for a fuller batch
        self._gathered_since = 0.0

    def start(self) -> None:
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="local-stream-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        client = self._client_factory()
        while not self.stop_event.is_set():
            try:
                handled = self.poll_once(client)
            except Exception:
                log.exception("stream polling failed; retrying")
                self._iterator = None
                self._gathered = []  # read again from the new iterator
                handled = False
            if not handled:
                self.stop_event.wait(self.idle_seconds)

    def _open(self, client: Any, kind: str, sequence_number: str | None = None) -> str:
        if self._shard_id is None:
            description = client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
            self._shard_id = description["Shards"][0]["ShardId"]
        kwargs = {"SequenceNumber": sequence_number} if sequence_number else {}
        response = client.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self._shard_id, ShardIteratorType=kind, **kwargs
        )
        return str(response["ShardIterator"])

    def poll_once(self, client: Any) -> bool:
        """Handles one batch; False if the stream had nothing new (or the batch is still gathering)."""
        if self._iterator is None:
            self._iterator = self._open(client, self.starting_position)
        response = client.get_records(ShardIterator=self._iterator, Limit=self.batch_size - len(self._gathered))
        received = response.get("Records") or []
        next_iterator = response.get("NextShardIterator") or self._iterator
        if received and not self._gathered:
            self._gathered_since = _now()
        self._gathered += received
        if (not self._gathered or (len(self._gathered) < self.batch_size and self.batching_window > 0
                                   and _now() - self._gathered_since < self.batching_window)):
            self._iterator = next_iterator
            return False
        raw_records, self._gathered = self._gathered, []
        records = [stream_record(record, self.stream_arn) for record in raw_records]
        wanted = [record for record in records if matches_any(self.filter_patterns, record)]
        resume_at = self._invoke(wanted) if wanted else None
        if resume_at is None:
            self._attempts = 0
            self._iterator = next_iterator
            return True
        self._attempts += 1
        if 0 <= self.maximum_retry_attempts < self._attempts:
            log.error(
                "%s: dropping %d stream records after %d attempts",
                self.function.name,
                len(wanted),
                self._attempts,
            )
            self._attempts = 0
            self._iterator = next_iterator
            return True
        self._iterator = self._open(client, "AT_SEQUENCE_NUMBER", resume_at)
        self.stop_event.wait(min(_MAX_BACKOFF_SECONDS, 0.5 * 2 ** (self._attempts - 1)))
        return True

    def _invoke(self, records: list[dict[str, Any]]) -> str | None:
        try:
            result = self.function.invoke({"Records": records})
        except Exception as error:
            if every_record_failed(error):
                log.debug("%s failed every one of %d stream records; retrying the batch", self.function.name,
                          len(records))
            else:
                log.exception("%s failed on %d stream records; retrying the batch", self.function.name,
                              len(records))
            return str(records[0]["dynamodb"]["SequenceNumber"])
        return retry_position(records, result, self.report_batch_item_failures)
