"""Records every AWS call a handler makes, as the IAM action and resource AWS would authorize.

moto does not enforce IAM, so a call the function's role would be refused passes every test. The recorder
closes that gap: a botocore hook (`provide-client-params`, which also fires for presigned URLs, since a
presigned GET is authorized with the signer's role) sees each call, the running function comes from
`local.lambdas.RUNNING_FUNCTION`, and the call becomes `(function, "service:Action", resource ARN)` with the
physical names of the local resources replaced by their template logical ids, so `local.iam` can match it
against the function's statements in `template.yaml`.

Calls made outside any handler (a test's own set-up) are not recorded. With `MAIL_PROXY_AWS_CALL_LOG` set to
a directory, every process (the local stack in a subprocess too) appends its calls to a file there.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from local.lambdas import RUNNING_FUNCTION
from local.template import DEFAULT_TEMPLATE, LOCAL_ACCOUNT_ID, LOCAL_REGION, Template, load_template

CALL_LOG_ENV = "MAIL_PROXY_AWS_CALL_LOG"
"""A directory: each process that records appends its calls to `calls-<pid>.jsonl` in it."""


@dataclass(frozen=True, order=True)
class AwsCall:
    function: str
    action: str
    """`service:Action` as IAM names it (a batch call is its single-item action, as IAM authorizes it)."""
    resource: str
    """The ARN, with a template resource named by its logical id (`table/MailTable`)."""


# ---------------------------------------------------------------------------------------------------------
# Canonical ARNs: the same form for a recorded call and a resolved policy statement


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:table/{name}"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{name}"


def queue_url(name: str) -> str:
    return f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT_ID}/{name}"


def bucket_arn(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:secret:{name}"


_KINDS = {
    "AWS::DynamoDB::Table": "table",
    "AWS::SQS::Queue": "queue",
    "AWS::S3::Bucket": "bucket",
    "AWS::SecretsManager::Secret": "secret",
}


class Naming:
    """Physical name → logical id, from the function's environment and the local stack's naming."""

    def __init__(self, template: Template, function: str | None, environ: Mapping[str, str]) -> None:
        self.by_kind: dict[str, dict[str, str]] = {kind: {} for kind in _KINDS.values()}
        self._patterns: dict[str, list[tuple[re.Pattern[str], str]]] = {kind: [] for kind in _KINDS.values()}
        for logical_id, resource in template.resources.items():
            kind = _KINDS.get(resource.get("Type", ""))
            if kind:
                # `local-MailTable`, `local-reportqueue.fifo`: any stage prefix, buckets in lower case
                pattern = re.compile(rf"^(?:[A-Za-z0-9_.-]+-)?{re.escape(logical_id)}(?:\.fifo)?$", re.IGNORECASE)
                self._patterns[kind].append((pattern, logical_id))
        if function and function in template.logical_ids("AWS::Serverless::Function"):
            variables = {
                **((template.function_globals.get("Environment") or {}).get("Variables") or {}),
                **((template.properties(function).get("Environment") or {}).get("Variables") or {}),
            }
            for variable, definition in variables.items():
                target = _reference_target(definition)
                value = environ.get(variable)
                if not target or not value or target not in template.resources:
                    continue
                kind = _KINDS.get(template.resources[target].get("Type", ""))
                if kind == "queue":
                    value = urlparse(value).path.rsplit("/", 1)[-1] or value
                elif kind == "secret":
                    value = _secret_name(value)
                if kind:
                    self.by_kind[kind][value] = target

    def logical(self, kind: str, physical: str) -> str:
        found = self.by_kind[kind].get(physical)
        if found:
            return found
        for pattern, logical_id in self._patterns[kind]:
            if pattern.match(physical):
                return logical_id
        return physical


def _reference_target(definition: Any) -> str | None:
    """`!Ref X` or `!GetAtt X.Attr` → X; anything composed → None."""
    if isinstance(definition, dict) and len(definition) == 1:
        ((key, value),) = definition.items()
        if key == "Ref" and isinstance(value, str):
            return value
        if key == "Fn::GetAtt" and isinstance(value, list) and value:
            return str(value[0])
    return None


def _secret_name(secret_id: str) -> str:
    """A secret's name from its id (name or ARN; an ARN ends in `-` and six random characters)."""
    if secret_id.startswith("arn:"):
        name = secret_id.split(":secret:", 1)[-1]
        return re.sub(r"-[A-Za-z0-9]{6}$", "", name)
    return secret_id


# ---------------------------------------------------------------------------------------------------------
# One call → the IAM actions and resources it needs

_SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "DeleteObjects": "DeleteObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
}
_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def describe_call(service: str, operation: str, params: Mapping[str, Any], naming: Naming) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one API call."""
    if service == "dynamodb":
        return _dynamodb(operation, params, naming)
    if service == "sqs":
        action = _SQS_ACTIONS.get(operation, operation)
        if operation == "GetQueueUrl":
            name = str(params.get("QueueName", "*"))
        else:
            name = urlparse(str(params.get("QueueUrl", ""))).path.rsplit("/", 1)[-1] or "*"
        return [(f"sqs:{action}", queue_arn(naming.logical("queue", name)))]
    if service == "s3":
        bucket = naming.logical("bucket", str(params.get("Bucket", "*")))
        action = _S3_ACTIONS.get(operation, operation)
        if "Key" in params:
            pairs = [(f"s3:{action}", f"{bucket_arn(bucket)}/{params['Key']}")]
        elif operation == "DeleteObjects":  # IAM checks s3:DeleteObject on each object named
            objects = (params.get("Delete") or {}).get("Objects") or []
            pairs = [(f"s3:{action}", f"{bucket_arn(bucket)}/{o.get('Key', '*')}") for o in objects]
        else:
            pairs = [(f"s3:{action}", bucket_arn(bucket))]
        if operation == "CopyObject":
            source = params.get("CopySource")
            if isinstance(source, Mapping):
                source_bucket, source_key = str(source.get("Bucket", "*")), str(source.get("Key", "*"))
            else:
                source_bucket, _, source_key = str(source or "*/*").lstrip("/").partition("/")
            pairs.append(("s3:GetObject", f"{bucket_arn(naming.logical('bucket', source_bucket))}/{source_key}"))
        return pairs
    if service == "secretsmanager":
        name = naming.logical("secret", _secret_name(str(params.get("SecretId", "*"))))
        return [(f"secretsmanager:{operation}", secret_arn(name))]
    return [(f"{service}:{operation}", "*")]


def _dynamodb(operation: str, params: Mapping[str, Any], naming: Naming) -> list[tuple[str, str]]:
    def arn(table: str, index: str | None = None) -> str:
        base = table_arn(naming.logical("table", table))
        return f"{base}/index/{index}" if index else base

    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", arn(str(t))) for t in (params.get("RequestItems") or {})]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        pairs = []
        for entry in params.get("TransactItems") or []:
            for kind, body in entry.items():
                pairs.append((f"dynamodb:{_TRANSACT_ACTIONS.get(kind, kind)}", arn(str(body.get("TableName", "*")))))
        return pairs
    return [(f"dynamodb:{operation}", arn(str(params.get("TableName", "*")), params.get("IndexName")))]


# ---------------------------------------------------------------------------------------------------------
# The recorder


class CallRecorder:
    """Collects the calls of this process (and, with a log directory, appends each new one to a file)."""

    def __init__(self, template: Template | None = None, log_dir: Path | None = None) -> None:
        self.template = template or load_template(DEFAULT_TEMPLATE)
        self.calls: set[AwsCall] = set()
        self.log_dir = log_dir
        self._lock = threading.Lock()

    def on_call(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        """botocore `provide-client-params` handler: returns None, so the call's parameters stay as they are."""
        function = RUNNING_FUNCTION.get()
        if function is None:
            return
        try:
            service = str(model.service_model.signing_name or model.service_model.endpoint_prefix)
            naming = Naming(self.template, function, os.environ)
            pairs = describe_call(service, model.name, params, naming)
        except Exception as error:  # a recorder bug must show, not break the handler
            pairs = [(f"recorder-error:{type(error).__name__}", str(error))]
        self.add(AwsCall(function, action, resource) for action, resource in pairs)

    def add(self, calls: Iterable[AwsCall]) -> None:
        with self._lock:
            new = [call for call in calls if call not in self.calls]
            self.calls.update(new)
            if new and self.log_dir is not None:
                path = self.log_dir / f"calls-{os.getpid()}.jsonl"
                with path.open("a", encoding="utf-8") as sink:
                    for call in new:
                        sink.write(json.dumps([call.function, call.action, call.resource]) + "\n")


_recorders: list[CallRecorder] = []


def _dispatch(**kwargs: Any) -> None:
    for recorder in list(_recorders):
        recorder.on_call(**kwargs)


def install(recorder: CallRecorder) -> CallRecorder:
    """Hooks every botocore session created from now on (and boto3's default one) into `recorder`."""
    import boto3
    import botocore.handlers

    from local.lambdas import install_scoped_environ

    install_scoped_environ()  # pool threads inherit the running function
    if ("provide-client-params", _dispatch) not in botocore.handlers.BUILTIN_HANDLERS:
        botocore.handlers.BUILTIN_HANDLERS.append(("provide-client-params", _dispatch))
        if boto3.DEFAULT_SESSION is not None:
            boto3.DEFAULT_SESSION._session.register("provide-client-params", _dispatch)
    _recorders.append(recorder)
    return recorder


def install_from_environment() -> CallRecorder | None:
    """Records to `$MAIL_PROXY_AWS_CALL_LOG` when it names a directory (the local stack calls this)."""
    directory = os.environ.get(CALL_LOG_ENV)
    if not directory or not Path(directory).is_dir():
        return None
    return install(CallRecorder(log_dir=Path(directory)))


def read_call_logs(directory: Path) -> set[AwsCall]:
    """Every call the processes logging to `directory` recorded."""
    calls: set[AwsCall] = set()
    for path in sorted(directory.glob("calls-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                function, action, resource = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line cut short by a killed process
            calls.add(AwsCall(str(function), str(action), str(resource)))
    return calls
