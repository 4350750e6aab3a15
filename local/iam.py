"""What each function's role in `template.yaml` allows, and a check of recorded AWS calls against it.

A function's `Policies` are expanded to IAM statements: inline `Statement` lists as written, SAM policy
templates (`DynamoDBCrudPolicy: {TableName: !Ref T}`) to the actions SAM gives them. `Ref`, `GetAtt` and `Sub`
resolve to the canonical ARNs `local.aws_calls` records (`arn:aws:dynamodb:...:table/MailTable`), so a call
and a grant compare directly. Conditions and parameters take their defaults unless `parameters` says otherwise.

Roles SAM adds on its own (the basic execution role, the event source pollers' managed policies, X-Ray) are
not modelled: the code must not depend on them, so a call they alone would allow is reported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from local.aws_calls import AwsCall, bucket_arn, queue_arn, queue_url, secret_arn, table_arn
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, Template


class PolicyError(Exception):
    """A policy the checker cannot expand (an unknown SAM policy template, a managed policy)."""


@dataclass(frozen=True)
class Grant:
    """One (action, resource) pair of an Allow statement; patterns may hold IAM wildcards."""

    function: str
    action: str
    resource: str

    def allows(self, call: AwsCall) -> bool:
        return (
            call.function == self.function
            and fnmatch.fnmatchcase(call.action.lower(), self.action.lower())
            and fnmatch.fnmatchcase(call.resource, self.resource)
        )


# SAM policy templates: the actions and resources SAM's policy_templates give them (the ones this project
# may use; an unknown one is an error, so adding it here is a deliberate step).
_TABLE = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}"
_QUEUE = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${QueueName}"
_BUCKET = "arn:${AWS::Partition}:s3:::${BucketName}"
SAM_POLICY_TEMPLATES: dict[str, list[tuple[list[str], list[str]]]] = {
    "DynamoDBCrudPolicy": [(
        ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
         "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
         "dynamodb:ConditionCheckItem"],
        [_TABLE, _TABLE + "/index/*"])],
    "DynamoDBReadPolicy": [(
        ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"],
        [_TABLE, _TABLE + "/index/*"])],
    "DynamoDBWritePolicy": [(
        ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
        [_TABLE, _TABLE + "/index/*"])],
    "SQSSendMessagePolicy": [(["sqs:SendMessage*"], [_QUEUE])],
    "SQSPollerPolicy": [(
        ["sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "sqs:DeleteMessage",
         "sqs:DeleteMessageBatch", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
        [_QUEUE])],
    "S3ReadPolicy": [(
        ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion",
         "s3:GetLifecycleConfiguration"],
        [_BUCKET, _BUCKET + "/*"])],
    "S3WritePolicy": [(
        ["s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"],
        [_BUCKET, _BUCKET + "/*"])],
    "S3CrudPolicy": [(
        ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:PutObject",
         "s3:PutObjectAcl", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:DeleteObject"],
        [_BUCKET, _BUCKET + "/*"])],
    "AWSSecretsManagerGetSecretValuePolicy": [(["secretsmanager:GetSecretValue"], ["${SecretArn}"])],
}


def canonical_resolved(template: Template, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`Ref`/`GetAtt` of every resource as the canonical ARNs and names the recorder uses."""
    resolved: dict[str, Any] = {}
    for logical_id, resource in template.resources.items():
        kind = resource.get("Type", "")
        resolved[logical_id] = logical_id
        resolved[f"{logical_id}.Arn"] = f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{logical_id}"
        if kind == "AWS::DynamoDB::Table":
            resolved[f"{logical_id}.Arn"] = table_arn(logical_id)
            resolved[f"{logical_id}.StreamArn"] = table_arn(logical_id) + "/stream/*"
        elif kind == "AWS::SQS::Queue":
            resolved.update({logical_id: queue_url(logical_id), f"{logical_id}.QueueUrl": queue_url(logical_id),
                             f"{logical_id}.QueueName": logical_id, f"{logical_id}.Arn": queue_arn(logical_id)})
        elif kind == "AWS::S3::Bucket":
            resolved[f"{logical_id}.Arn"] = bucket_arn(logical_id)
        elif kind == "AWS::SecretsManager::Secret":
            resolved[logical_id] = secret_arn(logical_id)
        elif kind == "AWS::Serverless::Function":
            resolved[f"{logical_id}.Arn"] = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{logical_id}"
    resolved.update(parameters or {})
    return resolved


def function_grants(template: Template, function: str, parameters: Mapping[str, Any] | None = None) -> list[Grant]:
    """Every (action, resource) pair the function's `Policies` allow."""
    resolved = canonical_resolved(template, parameters)
    policies = template.properties(function).get("Policies") or []
    if not isinstance(policies, list):
        policies = [policies]
    grants: list[Grant] = []
    for policy in template.resolve(policies, resolved):
        for actions, resources in _statements(template, policy, resolved):
            grants.extend(Grant(function, a, r) for a in actions for r in resources)
    return grants


def _statements(template: Template, policy: Any, resolved: Mapping[str, Any]) -> Iterable[tuple[list[str], list[str]]]:
    if isinstance(policy, str):
        raise PolicyError(f"managed policy {policy!r}: name its actions in a Statement instead")
    if not isinstance(policy, dict):
        raise PolicyError(f"unsupported policy {policy!r}")
    if "Statement" in policy:
        for statement in _as_list(policy["Statement"]):
            if statement.get("Effect") != "Allow":
                raise PolicyError(f"only Allow statements are modelled: {statement!r}")
            if "NotAction" in statement or "NotResource" in statement:
                raise PolicyError(f"NotAction / NotResource are not modelled: {statement!r}")
            yield [str(a) for a in _as_list(statement["Action"])], [str(r) for r in _as_list(statement["Resource"])]
        return
    for name, arguments in policy.items():
        if name not in SAM_POLICY_TEMPLATES:
            raise PolicyError(f"SAM policy template {name} is not modelled in local/iam.py")
        variables = {str(k): v for k, v in (arguments or {}).items()}
        for actions, patterns in SAM_POLICY_TEMPLATES[name]:
            yield actions, [_sam_resource(template, pattern, variables, resolved) for pattern in patterns]


def _sam_resource(template: Template, pattern: str, variables: Mapping[str, Any], resolved: Mapping[str, Any]) -> str:
    """A SAM policy template's resource with its parameters filled (`${TableName}` → the table's name)."""
    text = pattern.replace("${AWS::Partition}", "aws").replace("${AWS::Region}", LOCAL_REGION)
    text = text.replace("${AWS::AccountId}", LOCAL_ACCOUNT_ID)
    for name, value in variables.items():
        text = text.replace("${" + name + "}", str(value))
    return text


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Report:
    denied: list[AwsCall]
    """Calls no grant of their function allows: AccessDenied in AWS."""
    unused: list[Grant]
    """Grants no recorded call used, and not listed as expected to be unused."""
    stale_exceptions: list[tuple[str, str, str]]
    """Listed as unused on purpose, but the template no longer grants them."""

    def text(self) -> str:
        lines = []
        if self.denied:
            lines.append("Calls the function's role in template.yaml does not allow (AccessDenied in AWS):")
            lines += [f"  {c.function}: {c.action} on {c.resource}" for c in sorted(self.denied)]
        if self.unused:
            lines.append("Granted in template.yaml but never used by any test (remove, or list with a reason):")
            lines += [f"  {g.function}: {g.action} on {g.resource}" for g in self.unused]
        if self.stale_exceptions:
            lines.append("Listed as unused on purpose, but no longer granted (remove from the list):")
            lines += [f"  {f}: {a} on {r}" for f, a, r in self.stale_exceptions]
        return "\n".join(lines)


def check(template: Template, calls: Iterable[AwsCall], *, unused_ok: Mapping[tuple[str, str, str], str],
          parameters: Mapping[str, Any] | None = None, check_unused: bool = True) -> Report:
    """Matches `calls` against every function's grants.

    `unused_ok` maps (function, action, resource) of a grant no test exercises to the reason it is kept.
    """
    functions = template.logical_ids("AWS::Serverless::Function")
    grants = [g for f in functions for g in function_grants(template, f, parameters)]
    calls = sorted(set(calls))
    denied = [c for c in calls if not any(g.allows(c) for g in grants)]
    unused: list[Grant] = []
    if check_unused:
        for grant in grants:
            key = (grant.function, grant.action, grant.resource)
            if key not in unused_ok and not any(grant.allows(c) for c in calls):
                unused.append(grant)
    keys = {(g.function, g.action, g.resource) for g in grants}
    stale = sorted(key for key in unused_ok if key not in keys)
    return Report(denied, unused, stale)
