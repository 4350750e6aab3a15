"""The local SQS poller gives the sender batches the way Lambda's event source mapping does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.lambdas import LocalFunction
from local.poller import PolledQueue, SqsPoller, records_to_delete, sqs_record


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def make_queue(sqs: Any, name: str, visibility: int = 30, **attributes: str) -> PolledQueue:
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility), **attributes})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return PolledQueue(url=url, arn=arn, visibility_timeout=visibility, batch_size=10)


def count_messages(sqs: Any, queue: PolledQueue) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_record_has_the_lambda_sqs_event_shape(sqs: Any) -> None:
    queue = make_queue(sqs, "shape")
    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody='{"id":"m1"}',
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}},
    )
    message = sqs.receive_message(
        QueueUrl=queue.url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"][0]
    record = sqs_record(message, queue)
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == queue.arn
    assert record["awsRegion"] == "us-east-1"
    assert record["body"] == '{"id":"m1"}' and record["md5OfBody"] == message["MD5OfBody"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["tenant"]["stringValue"] == "acme"
    assert record["messageAttributes"]["tenant"]["dataType"] == "String"
    assert record["messageId"] == message["MessageId"] and record["receiptHandle"] == message["ReceiptHandle"]


def test_failed_record_comes_back_after_visibility_and_the_others_are_deleted(sqs: Any) -> None:
    queue = make_queue(sqs, "partial", visibility=1)
    for index in range(3):
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"n": index}))
    batches: list[list[dict[str, Any]]] = []

    def sender(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batches.append(event["Records"])
        failed = [r["messageId"] for r in event["Records"] if json.loads(r["body"])["n"] == 1]
        if len(batches) > 1:
            failed = []  # the retry succeeds
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    poller = SqsPoller(LocalFunction("sender", sender), [queue], idle_seconds=0.05)
    poller.start()
    try:
        wait_until(lambda: len(batches) >= 2)
    finally:
        poller.stop()
    assert [json.loads(r["body"])["n"] for r in batches[0]] == [0, 1, 2]
    (retried,) = batches[1]
    assert json.loads(retried["body"]) == {"n": 1}
    assert retried["attributes"]["ApproximateReceiveCount"] == "2"
    assert count_messages(sqs, queue) == 0


def test_failed_record_stays_invisible_until_the_visibility_timeout(sqs: Any) -> None:
    queue = make_queue(sqs, "invisible", visibility=30)
    sqs.send_message(QueueUrl=queue.url, MessageBody="x")
    calls: list[float] = []

    def sender(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    poller = SqsPoller(LocalFunction("sender", sender), [queue], idle_seconds=0.02)
    assert poller.poll_once(sqs) is True
    assert poller.poll_once(sqs) is False  # still in flight: not redelivered early
    assert len(calls) == 1 and count_messages(sqs, queue) == 1


def test_handler_exception_deletes_nothing(sqs: Any) -> None:
    queue = make_queue(sqs, "crash")
    for index in range(4):
        sqs.send_message(QueueUrl=queue.url, MessageBody=str(index))

    def sender(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("smtp down")

    assert SqsPoller(LocalFunction("sender", sender), [queue]).poll_once(sqs) is True
    assert count_messages(sqs, queue) == 4


def test_without_report_batch_item_failures_a_success_deletes_the_whole_batch(sqs: Any) -> None:
    queue = make_queue(sqs, "nopartial")
    queue = PolledQueue(queue.url, queue.arn, batch_size=10, report_batch_item_failures=False)
    sqs.send_message(QueueUrl=queue.url, MessageBody="x")

    def sender(event: dict[str, Any], context: Any) -> Any:
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    SqsPoller(LocalFunction("sender", sender), [queue]).poll_once(sqs)
    assert count_messages(sqs, queue) == 0


def test_a_failure_naming_no_record_of_the_batch_fails_the_whole_batch() -> None:
    records = [{"messageId": "a"}, {"messageId": "b"}]
    assert records_to_delete(records, {"batchItemFailures": [{"itemIdentifier": "zzz"}]}, True) == []
    assert records_to_delete(records, {"batchItemFailures": [{"itemIdentifier": ""}]}, True) == []
    assert records_to_delete(records, {"batchItemFailures": [{"itemIdentifier": "a"}]}, True) == [records[1]]
    assert records_to_delete(records, {"batchItemFailures": []}, True) == records
    assert records_to_delete(records, None, True) == records


def test_batch_size_from_the_event_source_is_respected(sqs: Any) -> None:
    queue = make_queue(sqs, "small")
    queue = PolledQueue(queue.url, queue.arn, batch_size=3)
    for index in range(7):
        sqs.send_message(QueueUrl=queue.url, MessageBody=str(index))
    sizes: list[int] = []

    def sender(event: dict[str, Any], context: Any) -> Any:
        sizes.append(len(event["Records"]))

    poller = SqsPoller(LocalFunction("sender", sender), [queue])
    while poller.poll_once(sqs):
        pass
    assert sizes == [3, 3, 1]


def test_immediate_message_is_in_the_first_batch_after_it_is_sent_despite_a_low_backlog(sqs: Any) -> None:
    immediate, high, medium, low = (make_queue(sqs, name) for name in ("immediate", "high", "medium", "low"))
    for index in range(30):
        sqs.send_message(QueueUrl=low.url, MessageBody=f"low-{index}")
    first_batch_started = threading.Event()
    release_first_batch = threading.Event()
    batches: list[list[str]] = []

    def sender(event: dict[str, Any], context: Any) -> Any:
        batches.append([record["body"] for record in event["Records"]])
        if len(batches) == 1:
            first_batch_started.set()
            release_first_batch.wait(10)
        return {"batchItemFailures": []}

    poller = SqsPoller(LocalFunction("sender", sender), [immediate, high, medium, low], idle_seconds=0.02)
    poller.start()
    try:
        assert first_batch_started.wait(10)
        sqs.send_message(QueueUrl=immediate.url, MessageBody="urgent")
        release_first_batch.set()
        wait_until(lambda: len(batches) >= 2)
    finally:
        poller.stop()
    assert batches[0][0].startswith("low-")
    assert batches[1] == ["urgent"]


def test_messages_received_max_receive_count_times_move_to_the_dead_letter_queue(sqs: Any) -> None:
    dead = make_queue(sqs, "dead")
    policy = json.dumps({"deadLetterTargetArn": dead.arn, "maxReceiveCount": 2})
    queue = make_queue(sqs, "source", visibility=1, RedrivePolicy=policy)
    sqs.send_message(QueueUrl=queue.url, MessageBody="poison")
    attempts: list[str] = []

    def sender(event: dict[str, Any], context: Any) -> Any:
        attempts.extend(record["attributes"]["ApproximateReceiveCount"] for record in event["Records"])
        raise RuntimeError("always fails")

    poller = SqsPoller(LocalFunction("sender", sender), [queue], idle_seconds=0.05)
    poller.start()
    try:
        wait_until(lambda: count_messages(sqs, dead) == 1, timeout=15)
    finally:
        poller.stop()
    assert attempts == ["1", "2"]
    assert count_messages(sqs, queue) == 0


def test_handler_running_past_its_timeout_counts_as_failed(sqs: Any) -> None:
    queue = make_queue(sqs, "slow")
    sqs.send_message(QueueUrl=queue.url, MessageBody="x")

    def sender(event: dict[str, Any], context: Any) -> Any:
        time.sleep(0.3)
        return {"batchItemFailures": []}

    SqsPoller(LocalFunction("sender", sender, timeout_seconds=0.1), [queue]).poll_once(sqs)
    assert count_messages(sqs, queue) == 1


def test_filter_patterns_drop_records_without_invoking(sqs: Any) -> None:
    queue = make_queue(sqs, "filtered")
    queue = PolledQueue(queue.url, queue.arn, filter_patterns=({"body": {"kind": ["send"]}},))
    sqs.send_message(QueueUrl=queue.url, MessageBody='{"kind": "send"}')
    sqs.send_message(QueueUrl=queue.url, MessageBody='{"kind": "noise"}')
    bodies: list[str] = []

    def sender(event: dict[str, Any], context: Any) -> Any:
        bodies.extend(record["body"] for record in event["Records"])

    SqsPoller(LocalFunction("sender", sender), [queue]).poll_once(sqs)
    assert bodies == ['{"kind": "send"}']
    assert count_messages(sqs, queue) == 0


def test_stop_returns_promptly_when_idle(sqs: Any) -> None:
    queue = make_queue(sqs, "idle")
    poller = SqsPoller(LocalFunction("sender", lambda event, context: None), [queue], idle_seconds=0.2)
    poller.start()
    time.sleep(0.1)
    started = time.monotonic()
    poller.stop()
    assert time.monotonic() - started < 1.0


class FakeMonotonic:
    """The poller's clock for batching windows, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_batching_window_gathers_messages_until_the_batch_is_full(sqs: Any, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    monkeypatch.setattr("local.poller._now", FakeMonotonic())
    made = make_queue(sqs, "windowed")
    queue = PolledQueue(made.url, made.arn, batch_size=10, batching_window=5.0)
    batches: list[list[str]] = []
    poller = SqsPoller(LocalFunction("sender", lambda event, context: batches.append(
        [record["body"] for record in event["Records"]])), [queue])
    for index in range(3):
        sqs.send_message(QueueUrl=queue.url, MessageBody=str(index))
    assert poller.poll_once(sqs) is False  # gathering: no invocation with three of ten
    assert batches == []
    for index in range(3, 12):
        sqs.send_message(QueueUrl=queue.url, MessageBody=str(index))
    assert poller.poll_once(sqs) is True
    assert len(batches) == 1 and len(batches[0]) == 10
    assert sorted(batches[0], key=int) == [str(index) for index in range(10)]


def test_a_batching_window_invokes_with_what_it_gathered_once_it_has_passed(sqs: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeMonotonic()
    monkeypatch.setattr("local.poller._now", clock)
    made = make_queue(sqs, "windowed")
    queue = PolledQueue(made.url, made.arn, batch_size=10, batching_window=1.0)
    batches: list[list[str]] = []
    poller = SqsPoller(LocalFunction("sender", lambda event, context: batches.append(
        [record["body"] for record in event["Records"]])), [queue])
    sqs.send_message(QueueUrl=queue.url, MessageBody="a")
    assert poller.poll_once(sqs) is False
    clock.now += 0.5
    sqs.send_message(QueueUrl=queue.url, MessageBody="b")
    assert poller.poll_once(sqs) is False
    clock.now += 0.5
    assert poller.poll_once(sqs) is True
    assert batches == [["a", "b"]]  # each message once, in one batch
    assert count_messages(sqs, queue) == 0  # handled, so deleted
    assert poller.poll_once(sqs) is False


def test_a_queue_gathering_in_its_window_does_not_hold_back_a_higher_priority(sqs: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("local.poller._now", FakeMonotonic())
    urgent = make_queue(sqs, "urgent")
    made = make_queue(sqs, "medium")
    medium = PolledQueue(made.url, made.arn, batch_size=10, batching_window=1.0)
    batches: list[list[str]] = []
    poller = SqsPoller(LocalFunction("sender", lambda event, context: batches.append(
        [record["body"] for record in event["Records"]])), [urgent, medium])
    sqs.send_message(QueueUrl=medium.url, MessageBody="later")
    assert poller.poll_once(sqs) is False
    sqs.send_message(QueueUrl=urgent.url, MessageBody="now")
    assert poller.poll_once(sqs) is True
    assert batches == [["now"]]


def test_each_worker_invokes_its_own_instance_of_the_function(sqs: Any) -> None:
    queue = make_queue(sqs, "shared")
    for start in range(0, 30, 10):
        sqs.send_message_batch(QueueUrl=queue.url, Entries=[
            {"Id": str(index), "MessageBody": str(index)} for index in range(start, start + 10)])
    seen: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def instance(number: int) -> LocalFunction:
        def sender(event: dict[str, Any], context: Any) -> None:
            with lock:
                seen.extend((threading.current_thread().name, number, r["body"]) for r in event["Records"])
            time.sleep(0.05)  # long enough for the other worker to take the next batch meanwhile
        return LocalFunction("sender", sender)

    poller = SqsPoller(instance(0), [PolledQueue(queue.url, queue.arn, batch_size=5)], idle_seconds=0.02, workers=2,
                       instances=[instance(0), instance(1)])
    poller.start()
    try:
        wait_until(lambda: len(seen) >= 30)
    finally:
        poller.stop()
    assert sorted(int(body) for _thread, _number, body in seen) == list(range(30))  # each message once
    by_thread = {thread: {number for t, number, _body in seen if t == thread} for thread, _n, _b in seen}
    assert all(numbers == {int(thread.rsplit("-", 1)[1])} for thread, numbers in by_thread.items())


def test_an_idle_stack_polls_at_the_idle_pace_with_its_first_worker_only(sqs: Any) -> None:
    queue = make_queue(sqs, "quiet")
    calls: list[str] = []

    class CountingClient:
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(threading.current_thread().name)
            return {}

    poller = SqsPoller(LocalFunction("sender", lambda event, context: None), [queue], idle_seconds=0.05, workers=2,
                       client_factory=CountingClient)
    poller.start()
    time.sleep(0.6)
    poller.stop()
    first, extra = calls.count("local-sqs-poller-0"), calls.count("local-sqs-poller-1")
    assert first >= 5 and extra == 1  # the extra worker looked once, then waits a second between looks
