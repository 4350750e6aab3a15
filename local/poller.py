"""Feeds SQS messages to a function the way Lambda's SQS event source mapping does.

Batches are received with the queue's visibility timeout; after the handler returns, every record not named
in `batchItemFailures` is deleted, and a handler exception or timeout deletes nothing, so failed records come
back after the visibility timeout and reach the dead-letter queue after `maxReceiveCount` receives (moto moves
them on receive, as SQS does). Queues are polled in priority order and the poller starts again from the first
queue after every batch, so a higher priority never waits behind a backlog of a lower one.

A queue with a batching window (`MaximumBatchingWindowInSeconds`) gathers what it receives, as the event source
mapping does, until the batch is full or the window since its first message has passed; the messages stay
invisible meanwhile, and the other queues are polled as usual (each has its own mapping in AWS).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3

from local.event_filter import matches_any
from local.lambdas import LocalFunction
from local.template import LOCAL_REGION

log = logging.getLogger("local.poller")

_MAX_RECEIVE = 10  # SQS returns at most 10 messages a call
_now = time.monotonic  # batching windows are measured with this (tests replace it)
EXTRA_WORKER_IDLE_SECONDS = 1.0
"""How long a worker other than the first waits after finding every queue empty: the first polls at its usual
pace, the others join within this long once there is a backlog (as Lambda adds pollers), and an idle stack does
not poll once per worker."""


@dataclass(frozen=True)
class PolledQueue:
    """A queue bound to the function, with what the event source mapping needs to poll it."""

    url: str
    arn: str
    visibility_timeout: int = 30
    batch_size: int = 10
    report_batch_item_failures: bool = True
    filter_patterns: tuple[Any, ...] = field(default=())
    batching_window: float = 0.0
    """Seconds to gather messages for a fuller batch (0: invoke with what one receive brings)."""


@dataclass
class _Gathering:
    """Messages received for a queue's next batch, and when the first of them came."""

    messages: list[dict[str, Any]]
    since: float


def sqs_record(message: dict[str, Any], queue: PolledQueue, region: str = LOCAL_REGION) -> dict[str, Any]:
    """One record of the Lambda SQS event, built from a ReceiveMessage result."""
    attributes = {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()}
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        converted: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            converted["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            converted["binaryValue"] = base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
        message_attributes[name] = converted
    body = message.get("Body", "")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": region,
    }


def every_record_failed(error: BaseException) -> bool:
    """Powertools' batch processor raises this when no record of a batch succeeded, after the handler logged
    each failure; Lambda retries the batch as for any failed invocation, and so does the poller."""
    return type(error).__name__ == "BatchProcessingError"


def records_to_delete(records: Sequence[dict[str, Any]], result: Any, partial: bool) -> list[dict[str, Any]]:
    """The records Lambda deletes after a successful invocation.

    With `ReportBatchItemFailures`, every record but those listed; a malformed failure list (an identifier
    that is empty or not in the batch) fails the whole batch, as Lambda does.
    """
    if not partial or not isinstance(result, dict) or not result.get("batchItemFailures"):
        return list(records)
    ids = {record["messageId"] for record in records}
    failed = set()
    for failure in result["batchItemFailures"]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in ids:
            log.warning("batchItemFailures names %r, not a record of the batch: whole batch fails", identifier)
            return []
        failed.add(identifier)
    return [record for record in records if record["messageId"] not in failed]


class SqsPoller:
    """Polls queues in the given order (highest priority first) and invokes `function` with batches."""

    def __init__(
        self,
        function: LocalFunction,
        queues: Sequence[PolledQueue],
        *,
        idle_seconds: float = 0.1,
        workers: int = 1,
        client_factory: Callable[[], Any] | None = None,
        on_batch: Callable[[PolledQueue, list[dict[str, Any]]], None] | None = None,
        instances: Sequence[LocalFunction] = (),
    ) -> None:
        """`on_batch` is called with each batch before the handler runs (tests use it to observe order).

        `workers` > 1 polls and invokes from several threads at once, like concurrent Lambda instances: worker
        `i` invokes `instances[i]` (its own container, see `load_function`), or `function` when there is no
        such instance; share `function` itself only with a handler whose module-level state is thread-safe.
        """
        self.function = function
        self.instances = list(instances)
        self.queues = list(queues)
        self.idle_seconds = idle_seconds
        self.workers = workers
        self.stop_event = threading.Event()
        self._client_factory = client_factory or (lambda: boto3.client("sqs", region_name=LOCAL_REGION))
        self._on_batch = on_batch
        self._threads: list[threading.Thread] = []
        self._local = threading.local()  # each worker gathers its own batches, as separate pollers would
        self._thread_functions: dict[threading.Thread, LocalFunction] = {}
        self._thread_idle: dict[threading.Thread, float] = {}

    def start(self) -> None:
        self.stop_event.clear()
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"local-sqs-poller-{index}", daemon=True)
            self._thread_functions[thread] = self.instances[index] if index < len(self.instances) else self.function
            self._thread_idle[thread] = self.idle_seconds if index == 0 else max(self.idle_seconds,
                                                                                 EXTRA_WORKER_IDLE_SECONDS)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the batch in flight; a batch still running after `timeout` is abandoned."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _run(self) -> None:
        self._local.function = self._thread_functions.get(threading.current_thread(), self.function)
        idle = self._thread_idle.get(threading.current_thread(), self.idle_seconds)
        client = self._client_factory()
        while not self.stop_event.is_set():
            try:
                handled = self.poll_once(client)
            except Exception:
                log.exception("SQS polling failed; retrying")
                handled = False
            if not handled:
                self.stop_event.wait(idle)

    def poll_once(self, client: Any) -> bool:
        """Handles one batch of the first queue that has one ready; False if none had (all empty, or still
        gathering within their batching window)."""
        gathering: dict[str, _Gathering] = self._local.__dict__.setdefault("gathering", {})
        for queue in self.queues:
            held = gathering.get(queue.url)
            if held is None or len(held.messages) < queue.batch_size:
                wanted = queue.batch_size - (len(held.messages) if held else 0)
                received = self._receive(client, queue, wanted)
                if received:
                    if held is None:
                        held = gathering[queue.url] = _Gathering([], _now())
                    held.messages.extend(received)
            if held is None:
                continue
            if (len(held.messages) >= queue.batch_size or queue.batching_window <= 0
                    or _now() - held.since >= queue.batching_window):
                del gathering[queue.url]
                self._handle(client, queue, held.messages)
                return True
        return False

    def _receive(self, client: Any, queue: PolledQueue, wanted: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < wanted and not self.stop_event.is_set():
            response = client.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=min(_MAX_RECEIVE, wanted - len(messages)),
                VisibilityTimeout=queue.visibility_timeout,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages") or []
            messages.extend(received)
            if len(received) < _MAX_RECEIVE:
                break
        return messages

    def _handle(self, client: Any, queue: PolledQueue, messages: list[dict[str, Any]]) -> None:
        records = [sqs_record(message, queue) for message in messages]
        wanted = [record for record in records if matches_any(queue.filter_patterns, record)]
        if len(wanted) < len(records):
            # Lambda deletes the records its filters drop, without invoking the function.
            kept = {record["messageId"] for record in wanted}
            self._delete(client, queue, [record for record in records if record["messageId"] not in kept])
        if not wanted:
            return
        if self._on_batch is not None:
            self._on_batch(queue, wanted)
        function: LocalFunction = getattr(self._local, "function", self.function)
        try:
            result = function.invoke({"Records": wanted})
        except Exception as error:
            if every_record_failed(error):
                # each record's failure is the handler's to log (a warning for a retry, a traceback for a fault)
                log.debug("%s failed every record of a batch of %d from %s; nothing deleted", self.function.name,
                          len(wanted), queue.arn.rsplit(":", 1)[-1])
                return
            log.exception(
                "%s failed on a batch of %d from %s; nothing deleted",
                self.function.name,
                len(wanted),
                queue.arn.rsplit(":", 1)[-1],
            )
            return
        self._delete(client, queue, records_to_delete(wanted, result, queue.report_batch_item_failures))

    @staticmethod
    def _delete(client: Any, queue: PolledQueue, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), _MAX_RECEIVE):
            chunk = records[start : start + _MAX_RECEIVE]
            response = client.delete_message_batch(
                QueueUrl=queue.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
            for failure in response.get("Failed") or []:
                log.warning("could not delete a message from %s: %s", queue.url, failure)
