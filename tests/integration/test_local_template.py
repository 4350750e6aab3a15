"""The template reader: what the local stack and the tests build must be what the template deploys."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local.template import (
    DEFAULT_TEMPLATE,
    Template,
    function_environment,
    load_template,
    load_yaml,
    local_resolved_names,
    table_properties,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_template.yaml"


@pytest.fixture
def template() -> Template:
    return load_template(FIXTURE)


@pytest.fixture
def resolved(template: Template) -> dict[str, str]:
    return local_resolved_names(template, queue_url_base="http://127.0.0.1:5000/123456789012")


def test_short_tags_become_the_long_json_form() -> None:
    document = load_yaml(
        """
        a: !Ref MailTable
        b: !GetAtt SendQueueHigh.Arn
        c: !GetAtt [SendQueueHigh, QueueUrl]
        d: !Sub "${Stage}-x"
        e: !Join ["", [!Ref A, !Ref B]]
        f: !If [IsProd, 1, 2]
        g: !Equals [!Ref Stage, prod]
        h: !Condition IsProd
        version: 2010-09-09
        """
    )
    assert document["a"] == {"Ref": "MailTable"}
    assert document["b"] == {"Fn::GetAtt": ["SendQueueHigh", "Arn"]}
    assert document["c"] == {"Fn::GetAtt": ["SendQueueHigh", "QueueUrl"]}
    assert document["d"] == {"Fn::Sub": "${Stage}-x"}
    assert document["e"] == {"Fn::Join": ["", [{"Ref": "A"}, {"Ref": "B"}]]}
    assert document["f"] == {"Fn::If": ["IsProd", 1, 2]}
    assert document["g"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert document["h"] == {"Condition": "IsProd"}
    assert document["version"] == "2010-09-09"


def test_sub_resolves_refs_attributes_pseudo_parameters_and_escapes(template: Template) -> None:
    resolved = {"Stage": "local", "SendQueueLow.Arn": "arn:q"}
    text = template.resolve({"Fn::Sub": "${Stage}/${SendQueueLow.Arn}/${AWS::Region}/${!Literal}"}, resolved)
    assert text == "local/arn:q/us-east-1/${Literal}"
    assert template.resolve({"Fn::Sub": ["${x}-${Stage}", {"x": {"Ref": "Stage"}}]}, resolved) == "local-local"


def test_mail_table_properties_give_the_key_schema_and_the_three_indexes() -> None:
    props = table_properties("MailTable", FIXTURE)
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert [index["IndexName"] for index in props["GlobalSecondaryIndexes"]] == ["ByToken", "ByTenant", "Due"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert "TableName" not in props and "TimeToLiveSpecification" not in props and "SSESpecification" not in props
    assert all("ContributorInsightsSpecification" not in index for index in props["GlobalSecondaryIndexes"])


def test_table_properties_create_a_moto_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", **table_properties("MailTable", FIXTURE))
        description = client.describe_table(TableName="t")["Table"]
    assert {index["IndexName"] for index in description["GlobalSecondaryIndexes"]} == {"ByToken", "ByTenant", "Due"}
    assert description["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_ttl_attribute_comes_from_the_template(template: Template) -> None:
    assert template.table_ttl_attribute("MailTable") == "expires_at"
    assert template.table_ttl_attribute("IdempotencyTable") == "expiration"


def test_function_environment_merges_globals_and_resolves_local_names(resolved: dict[str, str]) -> None:
    environment = function_environment("ApiFunction", resolved, FIXTURE)
    assert environment["TABLE_NAME"] == "local-MailTable"
    assert environment["IDEMPOTENCY_TABLE_NAME"] == "local-IdempotencyTable"
    assert environment["SEND_QUEUE_IMMEDIATE_URL"].endswith("/local-SendQueueImmediate")
    assert environment["SEND_QUEUE_HIGH_URL"].endswith("/local-SendQueueHigh")  # from !GetAtt .QueueUrl
    assert environment["MAX_BODY_BYTES"] == "1048576"  # parameter default, as a string
    assert environment["POWERTOOLS_SERVICE_NAME"] == "api"  # the function's own value wins
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "MailProxy"  # from Globals
    assert environment["POWERTOOLS_LOG_LEVEL"] == "INFO"  # !If on a condition of the Stage parameter
    assert environment["STAGE_LABEL"] == "local-us-east-1"
    assert environment["DLQ_ARN"] == "arn:aws:sqs:us-east-1:123456789012:local-SendDeadLetterQueueLow"


def test_function_environment_drops_what_only_exists_in_aws(template: Template, resolved: dict[str, str]) -> None:
    dropped: list[str] = []
    environment = template.function_environment("ApiFunction", resolved, dropped)
    assert "SECRET_ID" not in environment  # the code must fall back to GMP_API_TOKEN / the local key
    assert "IMPORTED" not in environment
    assert "UNUSED_FLAG" not in environment  # !Ref AWS::NoValue
    assert sorted(dropped) == ["IMPORTED", "SECRET_ID"]


def test_queue_attributes_point_the_redrive_policy_at_the_dead_letter_queue(
    template: Template, resolved: dict[str, str]
) -> None:
    attributes = template.queue_attributes("SendQueueImmediate", resolved)
    assert attributes["VisibilityTimeout"] == "60"
    assert (
        '"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:local-SendDeadLetterQueueImmediate"'
        in (attributes["RedrivePolicy"])
    )
    assert '"maxReceiveCount": 5' in attributes["RedrivePolicy"]


def test_sender_sqs_sources_keep_batch_size_and_partial_failures(template: Template, resolved: dict[str, str]) -> None:
    sources = template.sqs_sources("SenderFunction", resolved)
    immediate = next(s for s in sources if s.queue_arn.endswith("local-SendQueueImmediate"))
    assert immediate.batch_size == 5  # !FindInMap
    assert all(source.report_batch_item_failures for source in sources)
    assert len(sources) == 4


def test_function_spec_takes_timeout_and_memory_from_globals_unless_overridden(template: Template) -> None:
    api = template.function_spec("ApiFunction")
    assert api.timeout_seconds == 29 and api.memory_mb == 256
    assert api.source_file == FIXTURE.parent / "local_functions" / "api" / "app.py"
    assert api.handler == "lambda_handler"
    assert template.function_spec("AuthorizerFunction").timeout_seconds == 10


def test_http_routes_mark_auth_none_routes_public(template: Template) -> None:
    routes = {route.route_key: route.authorized for route in template.http_routes("ApiFunction")}
    assert routes == {"GET /health": False, "GET /openapi.json": False, "ANY /{proxy+}": True}
    assert template.authorizer_identity_header() == "X-API-Token"


def test_schedule_and_stream_sources(template: Template, resolved: dict[str, str]) -> None:
    resolved = {**resolved, "MailTable.StreamArn": "arn:stream"}
    (schedule,) = template.schedule_sources("SchedulerFunction", resolved)
    assert schedule.period_seconds == 60
    (stream,) = template.stream_sources("ReporterFunction", resolved)
    assert stream.stream_arn == "arn:stream" and stream.batch_size == 50
    assert stream.filter_patterns == ({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "MSG#"}]}}}},)


@pytest.mark.skipif(not DEFAULT_TEMPLATE.is_file(), reason="template.yaml is not written yet")
def test_real_template_defines_the_mail_table_the_code_expects() -> None:
    props = table_properties("MailTable")
    assert [key["AttributeName"] for key in props["KeySchema"]] == ["pk", "sk"]
    assert {index["IndexName"] for index in props["GlobalSecondaryIndexes"]} >= {"ByToken", "ByTenant", "Due"}


@pytest.mark.skipif(not DEFAULT_TEMPLATE.is_file(), reason="template.yaml is not written yet")
def test_real_template_functions_get_their_table_and_queues_locally() -> None:
    template = load_template()
    resolved = local_resolved_names(template)
    api = template.function_environment("ApiFunction", resolved)
    assert api["TABLE_NAME"] == "local-MailTable"
    for priority in ("IMMEDIATE", "HIGH", "MEDIUM", "LOW"):
        assert api[f"SEND_QUEUE_{priority}_URL"].endswith(f"/local-SendQueue{priority.title()}")
    sender = template.function_environment("SenderFunction", resolved)
    assert "SECRET_ID" not in sender


@pytest.mark.skipif(not DEFAULT_TEMPLATE.is_file(), reason="template.yaml is not written yet")
def test_real_template_batching_windows_reach_the_pollers() -> None:
    template = load_template()
    resolved = {**local_resolved_names(template), "MailTable.StreamArn": "arn:stream"}
    windows = {source.queue_arn.rsplit("-", 1)[-1]: source.batching_window
               for source in template.sqs_sources("SenderFunction", resolved)}
    assert windows == {"SendQueueImmediate": 0.0, "SendQueueHigh": 1.0, "SendQueueMedium": 1.0,
                       "SendQueueLow": 1.0}  # an immediate message is never held back for a fuller batch
    (stream,) = template.stream_sources("ReportRouterFunction", resolved)
    assert (stream.batch_size, stream.batching_window) == (100, 1.0)
