"""The report path's sample events in events/ (for `sam local invoke`, docs/sam.md): the table stream record of a
message that was sent drives the report router, and the FIFO report record drives the reporter, as AWS would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from local.lambdas import LocalFunction
from tests.conftest import ApiClient, Stack, load_function_module
from tests.fixtures.receiver import ReportReceiver

EVENTS = Path(__file__).resolve().parents[2] / "events"
TENANT_TOKEN = "acme-tenant-token-0001"


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def invoke(function: str, payload: dict[str, Any]) -> Any:
    module = load_function_module(function)
    module.wiring.cache_clear()
    return LocalFunction(f"local-{function}", module.lambda_handler, timeout_seconds=60).invoke(payload)


def sent_event_id() -> str:
    image = event("report_router_stream.json")["Records"][0]["dynamodb"]["NewImage"]
    return str(image["events"]["L"][0]["M"]["event_id"]["S"])


def test_the_stream_sample_queues_the_sent_event_on_the_tenants_report_group(api: ApiClient, stack: Stack) -> None:
    api.create_tenant("acme", token=TENANT_TOKEN, client_base_url="https://app.acme.example")
    assert invoke("report_router", event("report_router_stream.json")) == {"queued": 1, "contents_released": 0}
    queue = stack.resources.queues["ReportQueue"]
    (record,) = boto3.client("sqs").receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10,
                                                    MessageSystemAttributeNames=["All"])["Messages"]
    assert record["Attributes"]["MessageGroupId"] == "acme"
    body = json.loads(record["Body"])
    assert [(item["id"], item["event"], item["event_id"]) for item in body["events"]] == [
        ("order-1001-confirmation", "sent", sent_event_id())]


def test_the_fifo_sample_posts_the_report_to_the_tenants_application(api: ApiClient, stack: Stack) -> None:
    sample = event("reporter_sqs_fifo.json")
    assert json.loads(sample["Records"][0]["body"])["events"][0]["event_id"] == sent_event_id()
    with ReportReceiver() as receiver:
        api.create_tenant("acme", token=TENANT_TOKEN, client_base_url=receiver.url)
        assert invoke("reporter", sample) == {"batchItemFailures": []}
        (call,) = receiver.calls
    assert call.path == "/mail-proxy/sync"
    assert call.json == {"delivery_report": [{"id": "order-1001-confirmation", "event_id": sent_event_id(),
                                              "event": "sent", "sent_ts": 1795572003}]}
    assert call.headers["x-mail-proxy-signature"].startswith("t=")
