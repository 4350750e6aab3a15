"""What was tested is what AWS will run: every AWS call a handler makes is allowed by its role in
template.yaml, and the roles grant nothing no test uses.

Every handler invocation in this suite (in-process, and the local stacks it starts) is recorded by a botocore
hook (`local.aws_calls`, installed in tests/conftest.py); `test_every_aws_call_is_granted_and_every_grant_is_used`
runs after every other test (tests/conftest.py sorts it last) and matches the calls against the template's
statements (`local.iam`). A run of a subset checks only that every call seen is allowed.
"""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws_calls import AwsCall, read_call_logs
from local.iam import PolicyError, check, function_grants
from local.lambdas import LocalFunction
from local.template import Template, load_template
from mail_proxy.adapters.dynamodb.keys import TENANT_SK, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.adapters.secrets_config import reset_secrets
from mail_proxy.security.tokens import hash_token
from tests.conftest import (
    ADMIN_TOKEN,
    WORKER_DONE_PREFIX,
    ApiClient,
    Stack,
    load_function_module,
    message,
    reset_caches,
)
from tests.fixtures.api import submit
from tests.fixtures.bounce_poller import IMAP_PASSWORD, BouncePoller, bounce_mailbox
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.imap_server import ImapTestServer
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer

TESTS = Path(__file__).resolve().parents[1]
RECORDING_DIRS = (TESTS / "integration", TESTS / "e2e")
DEPLOYMENT_KEY_HEX = bytes(range(32)).hex()
OTHER_WORKERS_TIMEOUT_SECONDS = 900

_SQS = "arn:aws:sqs:us-east-1:123456789012:"
_LANE_REASON = "a message goes on its own priority's lane; the tests that get here use the medium one"
UNUSED_OK: dict[tuple[str, str, str], str] = {
    ("ReportRouterFunction", "sqs:SendMessage", _SQS + "ReportRouterDeadLetterQueue"):
        "Lambda's stream event source sends records that failed every retry there, with this role",
    ("ApiFunction", "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/IdempotencyTable"):
        "Powertools idempotency reads a record back when a conflicting write does not return it",
    ("ApiFunction", "sqs:ChangeMessageVisibility", _SQS + "ReportParkedQueue"):
        "run-now hands a parked report back when it cannot be queued again (report_queue.py)",
    **{(function, "sqs:SendMessage", _SQS + lane): _LANE_REASON
       for function in ("SenderFunction", "SchedulerFunction")
       for lane in ("SendQueueImmediate", "SendQueueHigh", "SendQueueLow")},
}


def _call(function: str, action: str, resource: str) -> AwsCall:
    return AwsCall(function, action, resource)


# ------------------------------------------------------------------------------------------ the checker


def test_a_call_outside_the_functions_statements_is_denied() -> None:
    template = load_template()
    report = check(template, [
        _call("SenderFunction", "s3:GetObject", "arn:aws:s3:::AttachmentBucket/payloads/acme/m1"),
        _call("SenderFunction", "dynamodb:DeleteTable", "arn:aws:dynamodb:us-east-1:123456789012:table/MailTable"),
        _call("ReporterFunction", "s3:GetObject", "arn:aws:s3:::AttachmentBucket/payloads/acme/m1"),
    ], unused_ok=UNUSED_OK, check_unused=False)
    assert [(c.function, c.action) for c in report.denied] == [
        ("ReporterFunction", "s3:GetObject"), ("SenderFunction", "dynamodb:DeleteTable")]


def test_a_tenant_bucket_is_readable_by_the_sender_only_once_the_operator_lists_it() -> None:
    template = load_template()
    fetch = _call("SenderFunction", "s3:GetObject", "arn:aws:s3:::acme-invoices/2026/11.pdf")
    assert check(template, [fetch], unused_ok=UNUSED_OK, check_unused=False).denied == [fetch]
    allowed = {"TenantAttachmentObjectArns": ["arn:aws:s3:::acme-invoices/*"]}
    assert check(template, [fetch], unused_ok=UNUSED_OK, parameters=allowed, check_unused=False).denied == []
    # listing a bucket for the sender never lets the api or another function read it
    api_read = _call("ApiFunction", "s3:GetObject", "arn:aws:s3:::acme-invoices/2026/11.pdf")
    assert check(template, [api_read], unused_ok=UNUSED_OK, parameters=allowed, check_unused=False).denied


def _mini_template(policies: Any) -> Template:
    document = {
        "Resources": {
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Fn": {"Type": "AWS::Serverless::Function",
                   "Properties": {"CodeUri": "fn", "Handler": "app.handler", "Policies": policies}},
        }
    }
    return Template(document, TESTS)


def test_sam_policy_templates_expand_to_their_actions_on_the_named_resources() -> None:
    template = _mini_template([{"DynamoDBCrudPolicy": {"TableName": {"Ref": "Table"}}},
                               {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["Queue", "QueueName"]}}}])
    grants = {(g.action, g.resource) for g in function_grants(template, "Fn")}
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/Table"
    assert ("dynamodb:Query", table + "/index/*") in grants and ("dynamodb:ConditionCheckItem", table) in grants
    report = check(template, [_call("Fn", "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:Queue"),
                              _call("Fn", "sqs:DeleteMessage", "arn:aws:sqs:us-east-1:123456789012:Queue")],
                   unused_ok={})
    assert [c.action for c in report.denied] == ["sqs:DeleteMessage"]
    assert ("dynamodb:GetItem", table) in {(g.action, g.resource) for g in report.unused}


def test_an_unknown_policy_template_or_managed_policy_fails_the_check_loudly() -> None:
    with pytest.raises(PolicyError, match="NotModelledPolicy"):
        function_grants(_mini_template([{"NotModelledPolicy": {}}]), "Fn")
    with pytest.raises(PolicyError, match="managed policy"):
        function_grants(_mini_template(["AmazonS3FullAccess"]), "Fn")


def test_a_grant_no_call_uses_is_reported_unless_listed_with_a_reason() -> None:
    template = _mini_template([{"Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
                                               "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}]}])
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/Table"
    calls = [_call("Fn", "dynamodb:GetItem", table)]
    assert [(g.action, g.resource) for g in check(template, calls, unused_ok={}).unused] == [("dynamodb:Query", table)]
    listed = {("Fn", "dynamodb:Query", table): "a reason"}
    assert check(template, calls, unused_ok=listed).unused == []
    gone = {("Fn", "dynamodb:Scan", table): "no longer granted"}
    assert check(template, calls, unused_ok=gone).stale_exceptions == [("Fn", "dynamodb:Scan", table)]


# ------------------------------------------------------------------------------------------ the recorder


def test_calls_are_recorded_under_the_running_function_with_template_names(
        api: ApiClient, recorded_aws_calls: dict[str, Any]) -> None:
    recorder = recorded_aws_calls["recorder"]
    before = set(recorder.calls)
    tenant = api.create_tenant("rec-acme")
    assert api.get("/tenant/rec-acme", token=tenant).status == 200
    boto3.client("dynamodb").describe_table(TableName="local-MailTable")  # the test's own call: not recorded
    new = recorder.calls - before
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/MailTable"
    assert AwsCall("AuthorizerFunction", "dynamodb:Query", table + "/index/ByToken") in new | before
    assert any(c.function == "ApiFunction" and c.resource == table for c in new | before)
    assert not any(c.action == "dynamodb:DescribeTable" for c in new)


def test_each_function_sees_only_its_own_template_variables(stack: Stack) -> None:
    seen: dict[str, dict[str, str | None]] = {}
    names = ("IDEMPOTENCY_TABLE_NAME", "ADMIN_SECRET_ID", "PUBLIC_API_URL", "SEND_QUEUE_LOW_URL", "TABLE_NAME")

    def probe(label: str) -> Any:
        def handler(event: Any, context: Any) -> None:
            import os

            seen[label] = {name: os.environ.get(name) for name in names}
        return handler

    import os
    os.environ["ADMIN_SECRET_ID"] = "admin-secret"
    try:
        for logical_id in ("SenderFunction", "ApiFunction", "AuthorizerFunction"):
            LocalFunction(f"local-{logical_id}", probe(logical_id), logical_id=logical_id).invoke({})
    finally:
        del os.environ["ADMIN_SECRET_ID"]
    assert seen["SenderFunction"]["IDEMPOTENCY_TABLE_NAME"] is None
    assert seen["SenderFunction"]["ADMIN_SECRET_ID"] is None
    assert seen["SenderFunction"]["SEND_QUEUE_LOW_URL"] and seen["SenderFunction"]["TABLE_NAME"]
    assert seen["ApiFunction"]["IDEMPOTENCY_TABLE_NAME"] == stack.env["IDEMPOTENCY_TABLE_NAME"]
    assert seen["ApiFunction"]["ADMIN_SECRET_ID"] == "admin-secret"
    assert seen["AuthorizerFunction"]["ADMIN_SECRET_ID"] == "admin-secret"
    assert seen["AuthorizerFunction"]["SEND_QUEUE_LOW_URL"] is None
    assert os.environ.get("IDEMPOTENCY_TABLE_NAME") == stack.env["IDEMPOTENCY_TABLE_NAME"]  # outside: unchanged


# ------------------------------------------------------------------------------------------ as deployed


@pytest.fixture
def deployed_secrets(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both secrets in Secrets Manager, read as in AWS: no local key or admin token in the environment."""
    from aws_lambda_powertools.utilities import parameters

    secrets = boto3.client("secretsmanager")
    key = secrets.create_secret(Name="local-MailProxySecret", SecretString=json.dumps(
        {"encryption_key_id": "k1", "encryption_key": DEPLOYMENT_KEY_HEX}))["ARN"]
    admin = secrets.create_secret(Name="local-AdminTokenSecret", SecretString=json.dumps(
        {"admin_token_hash": hash_token(ADMIN_TOKEN)}))["ARN"]
    monkeypatch.setenv("SECRET_ID", key)
    monkeypatch.setenv("ADMIN_SECRET_ID", admin)
    monkeypatch.delenv("GMP_API_TOKEN", raising=False)
    monkeypatch.delenv("MAIL_PROXY_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    parameters.clear_caches()
    reset_caches()
    yield
    parameters.clear_caches()
    reset_caches()


@pytest.mark.usefixtures("deployed_secrets")
def test_admin_token_cannot_become_a_tenant_token_with_the_deployed_environment() -> None:
    api = ApiClient()
    taken = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "dep-evil", "token": ADMIN_TOKEN})
    assert taken.status == 409, taken.text
    chosen = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "dep-ok", "token": "a-chosen-token-0123456789"})
    assert chosen.status == 201, chosen.text


@pytest.mark.usefixtures("deployed_secrets")
def test_a_message_is_sent_and_reported_with_keys_read_from_secrets_manager(
        stack: Stack, receiver: ReportReceiver) -> None:
    with ScriptedSmtpServer(auth=True) as smtp:
        _send_and_report(stack, smtp, receiver)


def _send_and_report(stack: Stack, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    api = ApiClient()
    created = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "dep-acme", "client_base_url": receiver.url})
    assert created.status == 201, created.text
    token = created.json["api_key"]
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=SMTP_USER, password=SMTP_PASSWORD)
    assert api.post("/commands/add-messages", token=token, body={"messages": [message("dep-1")]}).status == 200
    harness = DeliveryHarness(stack)
    try:
        reset_secrets()  # the key ring is per process: in AWS the sender's container reads the secret itself
        harness.drain()
        reset_secrets()  # and so does the reporter's
        harness.report()
    finally:
        harness.close()
    assert api.get("/messages/dep-1", token=token).json["status"] == "sent"
    assert len(smtp.messages) == 1
    assert [item["id"] for item in receiver.reports()] == ["dep-1"]
    load_function_module("sender").dispatcher.cache_clear()


@pytest.mark.usefixtures("deployed_secrets")
def test_the_bounce_poller_reads_a_mailbox_with_the_key_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    with ImapTestServer(tls="starttls") as imap:
        imap.add_user("bounces@dep.example", IMAP_PASSWORD)
        assert imap.ca_file is not None
        monkeypatch.setenv("MAIL_PROXY_IMAP_CA_FILE", imap.ca_file)
        reset_caches()
        api = ApiClient()
        mailbox = bounce_mailbox(imap, "bounces@dep.example")
        created = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "dep-bounce", "bounce_imap": mailbox})
        assert created.status == 201, created.text
        reset_secrets()  # the poller's own container
        result = BouncePoller().poll()
    assert result["mailboxes"] == 1 and result["failed"] == 0, result


# ------------------------------------------------------------------------------------------ s3_buckets


TENANT_BUCKET = "tenant-invoices"
"""A tenant's own bucket, allowed by the administrator (and, in the check, by TenantAttachmentObjectArns)."""
CHECK_PARAMETERS = {"TenantAttachmentObjectArns": [f"arn:aws:s3:::{TENANT_BUCKET}/*"]}


def _deliver(stack: Stack, api: ApiClient, token: str, *messages: dict[str, Any]) -> None:
    submit(api, token, *messages, queued=True)
    harness = DeliveryHarness(stack)
    try:
        harness.drain()
    finally:
        harness.close()


def test_s3_buckets_can_never_name_the_deployment_bucket(stack: Stack, api: ApiClient) -> None:
    deployment = stack.resources.buckets["AttachmentBucket"]
    created = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "s3-a", "s3_buckets": [deployment]})
    assert created.status == 422 and "deployment" in created.text
    api.create_tenant("s3-b")
    updated = api.put("/tenant/s3-b", token=ADMIN_TOKEN, body={"s3_buckets": [TENANT_BUCKET, deployment]})
    assert updated.status == 422 and "deployment" in updated.text
    assert api.put("/tenant/s3-b", token=ADMIN_TOKEN, body={"s3_buckets": [TENANT_BUCKET]}).status == 200


def test_an_attachment_from_a_listed_tenant_bucket_is_sent(
        stack: Stack, api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=TENANT_BUCKET)
    s3.put_object(Bucket=TENANT_BUCKET, Key="2026/11.pdf", Body=b"%PDF-1.4 tenant invoice")
    token = api.create_tenant("s3-acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    assert api.put("/tenant/s3-acme", token=ADMIN_TOKEN, body={"s3_buckets": [TENANT_BUCKET]}).status == 200
    _deliver(stack, api, token, message("s3-1", attachments=[
        {"filename": "11.pdf", "storage_path": f"s3://{TENANT_BUCKET}/2026/11.pdf"}]))
    assert api.get("/messages/s3-1", token=token).json["status"] == "sent"
    sent = email.message_from_bytes(smtp.wait_for_messages(1)[0].data, policy=email.policy.default)
    assert [part.get_payload(decode=True) for part in sent.iter_attachments()] == [  # type: ignore[attr-defined]
        b"%PDF-1.4 tenant invoice"]


def test_a_tenant_listing_the_deployment_bucket_still_reads_only_its_own_prefix(
        stack: Stack, api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    deployment = stack.resources.buckets["AttachmentBucket"]
    boto3.client("s3").put_object(Bucket=deployment, Key="attachments/other/secret.pdf", Body=b"other tenant")
    token = api.create_tenant("s3-old")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    # written before the API refused it (or by hand): the sender must not honour it
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key=item_key(tenant_pk("s3-old"), TENANT_SK),
        UpdateExpression="SET s3_buckets = :b", ExpressionAttributeValues={":b": {"L": [{"S": deployment}]}})
    _deliver(stack, api, token, message("s3-2", attachments=[
        {"filename": "x.pdf", "storage_path": f"s3://{deployment}/attachments/other/secret.pdf"}]))
    record = api.get("/messages/s3-2", token=token).json
    assert record["status"] == "error" and "not allowed" in record["error"]
    assert smtp.messages == []


# ------------------------------------------------------------------------------------------ the whole suite


def _complete_run(session: pytest.Session, deselected: bool) -> str | None:
    """Why this run cannot judge unused grants (a subset ran), or None."""
    if deselected:
        return "tests were deselected (-k / -m)"
    collected = {Path(str(item.fspath)).resolve() for item in session.items}
    missing = [p for d in RECORDING_DIRS for p in sorted(d.glob("test_*.py")) if p.resolve() not in collected]
    if missing:
        return f"{len(missing)} recording test files did not run (e.g. {missing[0].name})"
    return None


def _wait_for_other_workers(recorded: dict[str, Any], timeout: float = OTHER_WORKERS_TIMEOUT_SECONDS) -> None:
    """Under xdist this test runs last on its worker only: the others' calls are complete once they finished
    (each marks that in the shared log directory when its session ends; the controller hands this test out
    last, so every other test has been handed out already)."""
    if not recorded["worker"]:
        return
    others = {f"gw{n}" for n in range(recorded["workers"])} - {recorded["worker"]}
    deadline = time.monotonic() + timeout
    while True:
        done = {p.name.removeprefix(WORKER_DONE_PREFIX) for p in recorded["log_dir"].glob(WORKER_DONE_PREFIX + "*")}
        if others <= done:
            return
        assert time.monotonic() < deadline, f"workers {sorted(others - done)} still running after {timeout:.0f} s"
        time.sleep(0.2)


@pytest.mark.timeout(OTHER_WORKERS_TIMEOUT_SECONDS + 60)
def test_every_aws_call_is_granted_and_every_grant_is_used(
        request: pytest.FixtureRequest, recorded_aws_calls: dict[str, Any]) -> None:
    _wait_for_other_workers(recorded_aws_calls)
    calls = set(recorded_aws_calls["recorder"].calls) | read_call_logs(recorded_aws_calls["log_dir"])
    errors = [c for c in calls if c.action.startswith("recorder-error")]
    assert not errors, errors
    partial = _complete_run(request.session, recorded_aws_calls["deselected"])
    report = check(load_template(), calls, unused_ok=UNUSED_OK, parameters=CHECK_PARAMETERS,
                   check_unused=partial is None)
    assert not (report.denied or report.unused or report.stale_exceptions), "\n" + report.text()
    if partial:
        pytest.skip(f"every recorded call is allowed; unused grants not judged: {partial}")

