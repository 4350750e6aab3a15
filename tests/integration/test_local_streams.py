"""The local stream poller feeds a table's changes to a function as Lambda's stream mapping does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.lambdas import LocalFunction
from local.streams import StreamPoller, retry_position
from local.template import load_template, table_properties

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_template.yaml"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, str]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        description = client.create_table(TableName="mail", **table_properties("MailTable", FIXTURE))
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        yield client, streams, description["TableDescription"]["LatestStreamArn"]


def put(client: Any, pk: str, status: str = "pending") -> None:
    client.put_item(TableName="mail", Item={"pk": {"S": pk}, "sk": {"S": "MSG"}, "status": {"S": status}})


def drain(poller: StreamPoller, streams: Any) -> None:
    while poller.poll_once(streams):
        pass


def test_records_arrive_in_order_with_the_lambda_stream_shape(table: tuple[Any, Any, str]) -> None:
    client, streams, arn = table
    put(client, "MSG#1")
    put(client, "MSG#1", status="sent")
    batches: list[list[dict[str, Any]]] = []
    poller = StreamPoller(LocalFunction("reporter", lambda e, c: batches.append(e["Records"])), arn)
    drain(poller, streams)
    (records,) = batches
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY"]
    record = records[1]
    assert record["eventSource"] == "aws:dynamodb" and record["eventSourceARN"] == arn
    assert record["dynamodb"]["NewImage"]["status"] == {"S": "sent"}
    assert record["dynamodb"]["OldImage"]["status"] == {"S": "pending"}
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "MSG#1"}, "sk": {"S": "MSG"}}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)


def test_filter_criteria_from_the_template_keep_only_matching_records(table: tuple[Any, Any, str]) -> None:
    client, streams, arn = table
    (source,) = load_template(FIXTURE).stream_sources("ReporterFunction", {"MailTable.StreamArn": arn})
    put(client, "REPORTS")
    put(client, "MSG#2")
    seen: list[str] = []

    def reporter(event: dict[str, Any], context: Any) -> None:
        seen.extend(record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"])

    poller = StreamPoller(LocalFunction("reporter", reporter), arn, filter_patterns=source.filter_patterns)
    drain(poller, streams)
    assert seen == ["MSG#2"]


def test_partial_failure_resumes_from_the_failed_record(table: tuple[Any, Any, str]) -> None:
    client, streams, arn = table
    for index in range(3):
        put(client, f"MSG#{index}")
    batches: list[list[str]] = []

    def reporter(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batches.append([record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]])
        if len(batches) == 1:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    poller = StreamPoller(LocalFunction("reporter", reporter), arn, report_batch_item_failures=True, idle_seconds=0)
    poller.stop_event.set()  # no back-off wait between the attempts in this test
    drain(poller, streams)
    assert batches == [["MSG#0", "MSG#1", "MSG#2"], ["MSG#1", "MSG#2"]]


def test_exception_retries_the_batch_until_the_retry_limit_then_moves_on(table: tuple[Any, Any, str]) -> None:
    client, streams, arn = table
    put(client, "MSG#1")
    calls: list[int] = []

    def reporter(event: dict[str, Any], context: Any) -> None:
        calls.append(len(event["Records"]))
        raise RuntimeError("endpoint down")

    poller = StreamPoller(LocalFunction("reporter", reporter), arn, maximum_retry_attempts=2)
    poller.stop_event.set()
    drain(poller, streams)
    assert calls == [1, 1, 1]  # the first attempt and two retries
    put(client, "MSG#2")
    calls.clear()
    drain(poller, streams)
    assert calls == [1, 1, 1]  # the dropped batch is not seen again


def test_retry_position_is_the_lowest_failed_sequence_number() -> None:
    records = [{"dynamodb": {"SequenceNumber": n}} for n in ("100", "101", "102")]
    failures = {"batchItemFailures": [{"itemIdentifier": "102"}, {"itemIdentifier": "101"}]}
    assert retry_position(records, failures, partial=True) == "101"
    assert retry_position(records, {"batchItemFailures": [{"itemIdentifier": "9"}]}, partial=True) == "100"
    assert retry_position(records, failures, partial=False) is None
    assert retry_position(records, {"batchItemFailures": []}, partial=True) is None


def test_a_batching_window_gathers_records_until_the_batch_is_full_or_the_window_has_passed(
        table: tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, streams, arn = table
    clock = [1000.0]
    monkeypatch.setattr("local.streams._now", lambda: clock[0])
    batches: list[list[str]] = []
    poller = StreamPoller(LocalFunction("reporter", lambda e, c: batches.append(
        [r["dynamodb"]["Keys"]["pk"]["S"] for r in e["Records"]])), arn, batch_size=3, batching_window=1.0)
    put(client, "MSG#1")
    assert poller.poll_once(streams) is False  # one of three: gathering
    put(client, "MSG#2")
    put(client, "MSG#3")
    put(client, "MSG#4")
    assert poller.poll_once(streams) is True  # full at three
    assert batches == [["MSG#1", "MSG#2", "MSG#3"]]
    assert poller.poll_once(streams) is False  # MSG#4 waits for its window
    clock[0] += 1.0
    assert poller.poll_once(streams) is True
    assert batches[1:] == [["MSG#4"]]
    assert poller.poll_once(streams) is False
