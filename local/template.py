"""Reads the SAM template so the local stack and the tests build exactly what AWS would deploy.

The template is the single description of tables, queues, functions and their wiring; everything the local
stack creates in moto, and every environment variable a handler sees, is derived from it so the two cannot
drift. Only the intrinsic functions a SAM template uses for wiring are evaluated; anything that cannot be
known locally (a secret's ARN, an imported value) raises `Unresolvable` and the caller decides what to drop.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
LOCAL_STAGE = "local"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"

NO_VALUE = object()
"""What `!Ref AWS::NoValue` resolves to: the property or variable is removed."""


class Unresolvable(Exception):
    """An intrinsic refers to something the local stack does not create or know."""


class TemplateError(Exception):
    """The template lacks what the local stack needs (a resource, a property)."""


# ---------------------------------------------------------------------------------------------------------
# YAML with CloudFormation short tags


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation's `!Tag` shorthand as the long JSON form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        value = [logical_id, attribute]
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
# Dates such as AWSTemplateFormatVersion stay strings, as CloudFormation reads them.
_CfnLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in _CfnLoader.yaml_implicit_resolvers.copy().items()
}


def load_yaml(text: str) -> Any:
    """Parses template text, turning `!Ref X` into `{"Ref": "X"}`, `!Sub s` into `{"Fn::Sub": s}`, etc."""
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - _CfnLoader is a SafeLoader subclass


# ---------------------------------------------------------------------------------------------------------
# Specs derived from the template


@dataclass(frozen=True)
class SqsSource:
    """An SQS event source mapping of a function, as the poller needs it."""

    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool
    filter_patterns: tuple[Any, ...] = ()
    batching_window: float = 0.0
    """`MaximumBatchingWindowInSeconds`: how long the mapping gathers records for a fuller batch."""


@dataclass(frozen=True)
class StreamSource:
    """A DynamoDB stream event source mapping of a function."""

    stream_arn: str
    batch_size: int
    report_batch_item_failures: bool
    starting_position: str
    maximum_retry_attempts: int
    filter_patterns: tuple[Any, ...] = ()
    batching_window: float = 0.0
    """`MaximumBatchingWindowInSeconds`: how long the mapping gathers records for a fuller batch."""


@dataclass(frozen=True)
class ScheduleSource:
    """An EventBridge schedule of a function: its period and the constant input, if any."""

    name: str
    period_seconds: float
    input: Any | None = None


@dataclass(frozen=True)
class HttpRoute:
    """An HTTP API route served by a function; `authorized` is False for `Auth: NONE` routes."""

    method: str
    path: str
    authorized: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSpec:
    """Where a function's code is and how Lambda would run it."""

    logical_id: str
    code_dir: Path
    module: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    events: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source_file(self) -> Path:
        return self.code_dir / (self.module.replace(".", "/") + ".py")


def physical_name(logical_id: str, stage: str = LOCAL_STAGE) -> str:
    """Local names are predictable (`local-MailTable`) so a developer can find them with the AWS CLI."""
    return f"{stage}-{logical_id}"


_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)", re.IGNORECASE)
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period(expression: str) -> float:
    """Seconds between runs for `rate(...)`; a cron expression is approximated as once a minute."""
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return 60.0
    unit = match.group(2).lower().rstrip("s")
    return float(int(match.group(1)) * _RATE_UNITS[unit])


class Template:
    """A parsed SAM template with the intrinsic functions the local stack can evaluate."""

    def __init__(self, document: Mapping[str, Any], base_dir: Path) -> None:
        self.document = document
        self.base_dir = base_dir

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Template:
        path = Path(path)
        return cls(load_yaml(path.read_text(encoding="utf-8")), path.resolve().parent)

    # -- sections ---------------------------------------------------------------------------------------

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.document.get("Resources") or {}

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.document.get("Parameters") or {}

    @property
    def function_globals(self) -> Mapping[str, Any]:
        return (self.document.get("Globals") or {}).get("Function") or {}

    def resource(self, logical_id: str) -> Mapping[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"template has no resource {logical_id!r}") from None

    def properties(self, logical_id: str) -> Mapping[str, Any]:
        return self.resource(logical_id).get("Properties") or {}

    def logical_ids(self, *types: str) -> list[str]:
        """Logical ids of the resources of the given types, in template order."""
        return [lid for lid, res in self.resources.items() if res.get("Type") in types]

    # -- intrinsic functions ----------------------------------------------------------------------------

    def resolve(self, value: Any, resolved: Mapping[str, str]) -> Any:
        """Evaluates intrinsics in `value`.

        `resolved` maps what exists locally: `"LogicalId"` to what `!Ref` gives, `"LogicalId.Attr"` to what
        `!GetAtt` gives, and parameter names or pseudo parameters to override defaults.
        """
        if isinstance(value, list):
            items = [self.resolve(item, resolved) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg, resolved)
            if key == "Condition":
                return self.condition(arg, resolved)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg, resolved)
        out = {}
        for key, item in value.items():
            item = self.resolve(item, resolved)
            if item is not NO_VALUE:
                out[key] = item
        return out

    def _ref(self, name: Any, resolved: Mapping[str, str]) -> Any:
        if not isinstance(name, str):
            raise Unresolvable(f"Ref to {name!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in resolved:
            return resolved[name]
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"mail-proxy-{LOCAL_STAGE}",
            "AWS::StackId": f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stack/mail-proxy/1",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            parameter = self.parameters[name] or {}
            if "Default" not in parameter:
                raise Unresolvable(f"parameter {name} has no default")
            default = parameter["Default"]
            return ",".join(map(str, default)) if isinstance(default, list) else default
        raise Unresolvable(f"Ref {name} is not created locally")

    def _get_att(self, arg: Any, resolved: Mapping[str, str]) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = (self.resolve(part, resolved) for part in arg)
        key = f"{logical_id}.{attribute}"
        if key in resolved:
            return resolved[key]
        raise Unresolvable(f"GetAtt {key} is not created locally")

    def _sub(self, arg: Any, resolved: Mapping[str, str]) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v, resolved) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self._get_att(name, resolved))
            return str(self._ref(name, resolved))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _function(self, name: str, arg: Any, resolved: Mapping[str, str]) -> Any:
        if name == "GetAtt":
            return self._get_att(arg, resolved)
        if name == "Sub":
            return self._sub(arg, resolved)
        if name == "Join":
            delimiter, items = arg
            return str(delimiter).join(str(item) for item in self.resolve(items, resolved))
        if name == "Select":
            index, items = self.resolve(arg, resolved)
            return items[int(index)]
        if name == "Split":
            delimiter, text = self.resolve(arg, resolved)
            return str(text).split(delimiter)
        if name == "If":
            condition, when_true, when_false = arg
            chosen = when_true if self.condition(condition, resolved) else when_false
            return self.resolve(chosen, resolved)
        if name == "Equals":
            left, right = self.resolve(arg, resolved)
            return str(left) == str(right)
        if name == "Not":
            return not self._truth(arg[0], resolved)
        if name == "And":
            return all(self._truth(item, resolved) for item in arg)
        if name == "Or":
            return any(self._truth(item, resolved) for item in arg)
        if name == "FindInMap":
            map_name, top, second = self.resolve(arg, resolved)
            try:
                return self.document["Mappings"][map_name][top][second]
            except KeyError:
                raise Unresolvable(f"FindInMap {map_name}.{top}.{second}") from None
        if name == "ToJsonString":
            return json.dumps(self.resolve(arg, resolved), separators=(",", ":"))
        raise Unresolvable(f"Fn::{name} is not evaluated locally")

    def _truth(self, value: Any, resolved: Mapping[str, str]) -> bool:
        return bool(self.resolve(value, resolved))

    def condition(self, name: str, resolved: Mapping[str, str]) -> bool:
        """Evaluates a named condition of the `Conditions` section."""
        try:
            definition = self.document["Conditions"][name]
        except KeyError:
            raise TemplateError(f"template has no condition {name!r}") from None
        return self._truth(definition, resolved)

    # -- tables -----------------------------------------------------------------------------------------

    def table_properties(self, logical_id: str, resolved: Mapping[str, str] | None = None) -> dict[str, Any]:
        """`dynamodb.create_table` arguments (all but `TableName`) for the table's definition.

        CloudFormation-only properties (TTL, point-in-time recovery, SSE, tags) are left out; streams get
        the `StreamEnabled` flag the API wants.
        """
        self._expect_type(logical_id, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")
        props = self.resolve(self.properties(logical_id), resolved or {})
        kwargs: dict[str, Any] = {
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        index_keys = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
        for section in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(section):
                kwargs[section] = [{k: v for k, v in ix.items() if k in index_keys} for ix in props[section]]
        stream = props.get("StreamSpecification")
        if stream and stream.get("StreamViewType"):
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        return kwargs

    def table_ttl_attribute(self, logical_id: str) -> str | None:
        """The TTL attribute, if the table enables one."""
        ttl = self.resolve(self.properties(logical_id).get("TimeToLiveSpecification") or {}, {})
        return ttl.get("AttributeName") if ttl.get("Enabled", True) else None

    # -- queues -----------------------------------------------------------------------------------------

    def queue_attributes(self, logical_id: str, resolved: Mapping[str, str]) -> dict[str, str]:
        """`sqs.create_queue` attributes, with the redrive policy's DLQ ARN taken from `resolved`."""
        self._expect_type(logical_id, "AWS::SQS::Queue")
        props = self.resolve(self.properties(logical_id), resolved)
        names = (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
        )
        attributes = {name: _cfn_string(props[name]) for name in names if name in props}
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = policy if isinstance(policy, str) else json.dumps(policy)
        return attributes

    def queue_name(self, logical_id: str, stage: str = LOCAL_STAGE) -> str:
        """The local queue name; a FIFO queue's name must end in `.fifo`."""
        fifo = self.resolve(self.properties(logical_id).get("FifoQueue", False), {})
        return physical_name(logical_id, stage) + (".fifo" if fifo in (True, "true") else "")

    # -- functions --------------------------------------------------------------------------------------

    def function_spec(self, logical_id: str) -> FunctionSpec:
        """Code location, handler, timeout and memory, with `Globals.Function` as the default."""
        self._expect_type(logical_id, "AWS::Serverless::Function")
        props = self.properties(logical_id)
        merged = {**self.function_globals, **props}
        handler = str(merged.get("Handler", "app.lambda_handler"))
        module, _, attribute = handler.rpartition(".")
        code_uri = merged.get("CodeUri", ".")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local path for the local stack")
        return FunctionSpec(
            logical_id=logical_id,
            code_dir=(self.base_dir / code_uri).resolve(),
            module=module or "app",
            handler=attribute,
            timeout_seconds=float(self.resolve(merged.get("Timeout", 3), {})),
            memory_mb=int(self.resolve(merged.get("MemorySize", 128), {})),
            events=props.get("Events") or {},
        )

    def function_environment(
        self,
        logical_id: str,
        resolved: Mapping[str, str],
        dropped: list[str] | None = None,
    ) -> dict[str, str]:
        """The function's environment: Globals merged with its own variables, intrinsics resolved.

        A variable whose value cannot be resolved locally (a secret's ARN, say) is left out, so the code
        falls back to its local configuration; its name is appended to `dropped` when given.
        """
        self._expect_type(logical_id, "AWS::Serverless::Function")
        variables: dict[str, Any] = {
            **((self.function_globals.get("Environment") or {}).get("Variables") or {}),
            **((self.properties(logical_id).get("Environment") or {}).get("Variables") or {}),
        }
        environment: dict[str, str] = {}
        for name, value in variables.items():
            try:
                result = self.resolve(value, resolved)
            except Unresolvable:
                result = None
            if result is NO_VALUE:  # `!Ref AWS::NoValue`: absent in AWS as well
                continue
            if result is None or isinstance(result, dict | list):
                if dropped is not None:
                    dropped.append(name)
                continue
            environment[name] = _cfn_string(result)
        return environment

    def function_variable_names(self, logical_id: str) -> set[str]:
        """Names of the variables the function's environment declares (Globals included), resolved or not."""
        self._expect_type(logical_id, "AWS::Serverless::Function")
        return {
            *((self.function_globals.get("Environment") or {}).get("Variables") or {}),
            *((self.properties(logical_id).get("Environment") or {}).get("Variables") or {}),
        }

    def _events(self, logical_id: str, *types: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for name, event in (self.function_spec(logical_id).events or {}).items():
            if event.get("Type") in types:
                yield name, event.get("Properties") or {}

    def sqs_sources(self, logical_id: str, resolved: Mapping[str, str]) -> list[SqsSource]:
        """The function's SQS event sources, in template order."""
        sources = []
        for _name, props in self._events(logical_id, "SQS"):
            props = self.resolve(props, resolved)
            if props.get("Enabled", True) is False:
                continue
            sources.append(
                SqsSource(
                    queue_arn=props["Queue"],
                    batch_size=int(props.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    filter_patterns=_filter_patterns(props),
                    batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                )
            )
        return sources

    def stream_sources(self, logical_id: str, resolved: Mapping[str, str]) -> list[StreamSource]:
        """The function's DynamoDB stream event sources."""
        sources = []
        for _name, props in self._events(logical_id, "DynamoDB"):
            props = self.resolve(props, resolved)
            if props.get("Enabled", True) is False:
                continue
            sources.append(
                StreamSource(
                    stream_arn=props["Stream"],
                    batch_size=int(props.get("BatchSize", 100)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    filter_patterns=_filter_patterns(props),
                    batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                )
            )
        return sources

    def schedule_sources(self, logical_id: str, resolved: Mapping[str, str]) -> list[ScheduleSource]:
        """The function's EventBridge schedules (`Schedule` and `ScheduleV2` events)."""
        sources = []
        for name, props in self._events(logical_id, "Schedule", "ScheduleV2"):
            props = self.resolve(props, resolved)
            if props.get("Enabled", True) is False or props.get("State") == "DISABLED":
                continue
            expression = props.get("Schedule") or props.get("ScheduleExpression") or "rate(1 minute)"
            raw_input = props.get("Input")
            sources.append(
                ScheduleSource(
                    name=name,
                    period_seconds=schedule_period(str(expression)),
                    input=json.loads(raw_input) if isinstance(raw_input, str) else raw_input,
                )
            )
        return sources

    def http_routes(self, logical_id: str) -> list[HttpRoute]:
        """The function's HTTP API routes; `Auth: {Authorizer: NONE}` marks a public route."""
        routes = []
        for _name, props in self._events(logical_id, "HttpApi"):
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            routes.append(
                HttpRoute(
                    method=str(props.get("Method", "ANY")).upper().replace("X-AMAZON-APIGATEWAY-ANY-METHOD", "ANY"),
                    path=str(props.get("Path", "/{proxy+}")),
                    authorized=authorizer != "NONE",
                )
            )
        return routes

    def authorizer_identity_header(self, default: str = "X-API-Token") -> str:
        """The header named as the Lambda authorizer's identity source in the HTTP API."""
        for logical_id in self.logical_ids("AWS::Serverless::HttpApi"):
            authorizers = (self.properties(logical_id).get("Auth") or {}).get("Authorizers") or {}
            for authorizer in authorizers.values():
                headers = (authorizer.get("Identity") or {}).get("Headers") or []
                if headers:
                    return str(headers[0])
        return default

    def _expect_type(self, logical_id: str, *types: str) -> None:
        kind = self.resource(logical_id).get("Type")
        if kind not in types:
            raise TemplateError(f"{logical_id} is {kind}, expected {' or '.join(types)}")


def _cfn_string(value: Any) -> str:
    """CloudFormation passes every environment value and queue attribute as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _filter_patterns(props: Mapping[str, Any]) -> tuple[Any, ...]:
    filters = (props.get("FilterCriteria") or {}).get("Filters") or []
    patterns = []
    for item in filters:
        pattern = item.get("Pattern")
        patterns.append(json.loads(pattern) if isinstance(pattern, str) else pattern)
    return tuple(patterns)


# ---------------------------------------------------------------------------------------------------------
# Module-level helpers for tests


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> Template:
    return Template.from_file(path)


def load_template(path: str | os.PathLike[str] | Template | None = None) -> Template:
    """The template at `path` (default: the repository's `template.yaml`), parsed once per change."""
    if isinstance(path, Template):
        return path
    resolved_path = Path(path) if path is not None else DEFAULT_TEMPLATE
    if not resolved_path.is_file():
        raise FileNotFoundError(f"no SAM template at {resolved_path}")
    return _cached(str(resolved_path.resolve()), resolved_path.stat().st_mtime_ns)


def table_properties(logical_id: str, template: str | os.PathLike[str] | Template | None = None) -> dict[str, Any]:
    """`create_table` keyword arguments (without `TableName`) for a table of the template.

    Lets a test create its moto table from the template's own definition:
    `client.create_table(TableName="t", **table_properties("MailTable"))`.
    """
    return load_template(template).table_properties(logical_id)


def function_environment(
    logical_id: str,
    resolved: Mapping[str, str],
    template: str | os.PathLike[str] | Template | None = None,
) -> dict[str, str]:
    """A function's environment as deployed, resolved against what exists locally.

    `resolved` maps `"MailTable"` to the table name, `"SendQueueHigh"` (and `"SendQueueHigh.QueueUrl"`) to
    the queue URL, and so on; parameters fall back to their defaults. Unresolvable variables are dropped.
    """
    return load_template(template).function_environment(logical_id, resolved)


def local_resolved_names(
    template: str | os.PathLike[str] | Template | None = None,
    stage: str = LOCAL_STAGE,
    queue_url_base: str = f"http://127.0.0.1:5000/{LOCAL_ACCOUNT_ID}",
) -> dict[str, str]:
    """The `resolved` mapping the local stack would build, for tests that create resources themselves.

    Tables and buckets map to `local-<LogicalId>`; queues to `<queue_url_base>/local-<LogicalId>`.
    """
    parsed = load_template(template)
    resolved: dict[str, str] = {}
    if "Stage" in parsed.parameters:
        resolved["Stage"] = stage
    for logical_id in parsed.logical_ids("AWS::DynamoDB::Table"):
        name = physical_name(logical_id, stage)
        arn = f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:table/{name}"
        resolved.update({logical_id: name, f"{logical_id}.Arn": arn})
    for logical_id in parsed.logical_ids("AWS::SQS::Queue"):
        name = parsed.queue_name(logical_id, stage)
        url = f"{queue_url_base}/{name}"
        resolved.update(
            {
                logical_id: url,
                f"{logical_id}.QueueUrl": url,
                f"{logical_id}.QueueName": name,
                f"{logical_id}.Arn": f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{name}",
            }
        )
    for logical_id in parsed.logical_ids("AWS::S3::Bucket"):
        name = physical_name(logical_id, stage).lower()
        resolved.update({logical_id: name, f"{logical_id}.Arn": f"arn:aws:s3:::{name}"})
    return resolved
