"""The dashboard, alarms and saved queries of template.yaml point at things that exist.

A widget or an alarm on a metric nobody emits, or on a queue that was renamed, shows nothing and never fires:
CloudFormation accepts it all the same. So the template is parsed (with its short tags) and every reference is
checked against the template's own resources and parameters, and every ``MailProxy`` metric against the names
the code emits (``add_metric(name="...")`` / ``single_metric(name="...")`` in the layer and the functions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.template import REPO_ROOT, Template, load_template
from mail_proxy.adapters.observability import FailureClass

NAMESPACE = "MailProxy"
SEND_LANES = ("Immediate", "High", "Medium", "Low")
LAMBDA_METRICS = ("Errors", "Throttles", "Duration", "ConcurrentExecutions")
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9:]+)(?:\.([A-Za-z]+))?\}")
_EMITTED = re.compile(r"(?:add_metric|single_metric)\(\s*name=\"([A-Za-z]+)\"")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def emitted_metric_names() -> set[str]:
    sources = [*(REPO_ROOT / "layers" / "mail_proxy" / "mail_proxy").rglob("*.py"),
               *(REPO_ROOT / "functions").glob("*/app.py")]
    return {name for path in sources for name in _EMITTED.findall(path.read_text(encoding="utf-8"))}


def dashboard_text(template: Template) -> str:
    [dashboard] = template.logical_ids("AWS::CloudWatch::Dashboard")
    body = template.properties(dashboard)["DashboardBody"]
    assert isinstance(body, dict) and isinstance(body.get("Fn::Sub"), str), "DashboardBody is one !Sub string"
    return str(body["Fn::Sub"])


def dashboard(template: Template) -> dict[str, Any]:
    """The body as CloudWatch would read it, each ``${X}`` / ``${X.Attr}`` replaced by ``<X>`` / ``<X.Attr>``."""
    text = _REFERENCE.sub(lambda m: "<" + ".".join(filter(None, m.groups())) + ">", dashboard_text(template))
    return dict(json.loads(text))


def metric_lines(widget: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, dimensions) of each metric of a widget."""
    for line in widget["properties"].get("metrics", []):
        plain = [part for part in line if not isinstance(part, dict)]
        namespace, name, *pairs = plain
        yield namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))


def widget_metrics(template: Template) -> list[tuple[str, str, dict[str, str]]]:
    return [m for w in dashboard(template)["widgets"] if w["type"] == "metric" for m in metric_lines(w)]


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {lid: dict(template.properties(lid)) for lid in template.logical_ids("AWS::CloudWatch::Alarm")}


def alarm_metrics(alarm: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, dimensions) of a single-metric alarm or of each metric of a metric-math alarm."""
    if "MetricName" in alarm:
        yield alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    for query in alarm.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            yield metric["Namespace"], metric["MetricName"], {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def deploy_gates(template: Template) -> set[str]:
    """Alarms that only gate deploys (CodeDeploy rolls back when one fires); they notify nobody."""
    return {lid for lid in template.logical_ids("AWS::CloudWatch::Alarm") if lid.endswith("DeployErrorsAlarm")}


def operator_alarms(template: Template) -> dict[str, dict[str, Any]]:
    gates = deploy_gates(template)
    return {lid: alarm for lid, alarm in alarms(template).items() if lid not in gates}


def log_group_of(template: Template, function: str) -> str:
    """The log group resource that holds a function's logs: the one named as Lambda names it."""
    [group] = [lid for lid in template.logical_ids("AWS::Logs::LogGroup")
               if template.properties(lid)["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}]
    return group


def ids_of_type(template: Template, *types: str) -> set[str]:
    return set(template.logical_ids(*types))


def dead_letter_queues(template: Template) -> set[str]:
    """Every queue something parks records in: redrive targets and event sources' failure destinations."""
    found = set()
    for lid in template.logical_ids("AWS::SQS::Queue"):
        target = (template.properties(lid).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target:
            found.add(target["Fn::GetAtt"][0])
    for lid in template.logical_ids("AWS::Serverless::Function"):
        for event in (template.properties(lid).get("Events") or {}).values():
            destination = (((event.get("Properties") or {}).get("DestinationConfig") or {}).get("OnFailure") or {})
            if destination:
                found.add(destination["Destination"]["Fn::GetAtt"][0])
    return found


# ------------------------------------------------------------------------------------------------ dashboard


def test_every_dashboard_reference_names_a_resource_parameter_or_pseudo_parameter(template: Template) -> None:
    unknown = []
    for logical_id, attribute in _REFERENCE.findall(dashboard_text(template)):
        known = logical_id in template.resources or logical_id in template.parameters
        if attribute:
            known = logical_id in template.resources
        if not (known or logical_id.startswith("AWS::")):
            unknown.append(f"{logical_id}.{attribute}" if attribute else logical_id)
    assert unknown == []


def test_the_dashboard_is_named_per_stage_and_its_url_is_an_output(template: Template) -> None:
    [lid] = template.logical_ids("AWS::CloudWatch::Dashboard")
    assert template.properties(lid)["DashboardName"] == {"Fn::Sub": "mail-proxy-${Stage}"}
    url = template.document["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert f"${{{lid}}}" in url and "#dashboards:name=" in url


def test_dashboard_custom_metrics_are_emitted_by_the_code_with_the_functions_dimensions(template: Template) -> None:
    emitted = emitted_metric_names()
    service = template.function_globals["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    custom = [(name, dims) for namespace, name, dims in widget_metrics(template) if namespace == NAMESPACE]
    assert custom
    for name, dims in custom:
        assert name in emitted, f"{name} is on the dashboard but no code emits it"
        assert dims.get("service") == service and dims.get("stage") == "<Stage>", (name, dims)
        assert set(dims) <= {"service", "stage", "reason_class"}, (name, dims)


def test_every_metric_the_code_emits_is_on_the_dashboard(template: Template) -> None:
    shown = {name for namespace, name, _ in widget_metrics(template) if namespace == NAMESPACE}
    assert emitted_metric_names() - shown == set()


def test_failures_are_shown_for_every_reason_class(template: Template) -> None:
    shown = {dims["reason_class"] for _, name, dims in widget_metrics(template)
             if name == "MessagesFailed" and "reason_class" in dims}
    assert shown == {c.value for c in FailureClass}


def test_queue_widgets_reference_queues_of_the_template(template: Template) -> None:
    queues = ids_of_type(template, "AWS::SQS::Queue")
    for namespace, name, dims in widget_metrics(template):
        if namespace == "AWS/SQS":
            match = re.fullmatch(r"<(\w+)\.QueueName>", dims["QueueName"])
            assert match and match.group(1) in queues, (name, dims)


@pytest.mark.parametrize("metric", ["ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"])
def test_depth_and_oldest_age_are_shown_for_every_send_lane(template: Template, metric: str) -> None:
    shown = {dims["QueueName"] for ns, name, dims in widget_metrics(template) if ns == "AWS/SQS" and name == metric}
    assert {f"<SendQueue{lane}.QueueName>" for lane in SEND_LANES} <= shown


def test_every_dead_letter_queue_depth_is_shown(template: Template) -> None:
    shown = {dims["QueueName"] for ns, name, dims in widget_metrics(template)
             if ns == "AWS/SQS" and name == "ApproximateNumberOfMessagesVisible"}
    dlqs = dead_letter_queues(template)
    assert len(dlqs) >= 6
    assert {f"<{q}.QueueName>" for q in dlqs} <= shown


@pytest.mark.parametrize("metric", LAMBDA_METRICS)
def test_lambda_metrics_are_shown_for_every_function(template: Template, metric: str) -> None:
    shown = {dims["FunctionName"] for ns, name, dims in widget_metrics(template)
             if ns == "AWS/Lambda" and name == metric}
    functions = ids_of_type(template, "AWS::Serverless::Function")
    assert shown == {f"<{f}>" for f in functions}


@pytest.mark.parametrize("metric", ["4xx", "5xx", "Latency"])
def test_api_metrics_use_the_http_api_id_and_its_default_stage(template: Template, metric: str) -> None:
    shown = [dims for ns, name, dims in widget_metrics(template) if ns == "AWS/ApiGateway" and name == metric]
    assert shown
    assert template.resources["HttpApi"]["Type"] == "AWS::Serverless::HttpApi"
    assert "StageName" not in template.properties("HttpApi")  # so the stage is $default
    for dims in shown:
        assert dims == {"ApiId": "<HttpApi>", "Stage": "$default"}


def test_the_alarm_widget_lists_every_alarm(template: Template) -> None:
    [widget] = [w for w in dashboard(template)["widgets"] if w["type"] == "alarm"]
    assert set(widget["properties"]["alarms"]) == {f"<{lid}.Arn>" for lid in operator_alarms(template)}


# ------------------------------------------------------------------------------------------------ alarms


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(template: Template) -> None:
    for lid, alarm in operator_alarms(template).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], lid


def test_every_alarm_is_named_per_stage(template: Template) -> None:
    names = [alarm["AlarmName"]["Fn::Sub"] for alarm in alarms(template).values()]
    assert all(name.startswith("mail-proxy-${Stage}-") for name in names)
    assert len(set(names)) == len(names)


def test_every_alarm_watches_a_metric_that_exists(template: Template) -> None:
    emitted = emitted_metric_names()
    queues = ids_of_type(template, "AWS::SQS::Queue")
    functions = ids_of_type(template, "AWS::Serverless::Function")
    service = template.function_globals["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    for lid, alarm in alarms(template).items():
        watched = list(alarm_metrics(alarm))
        assert watched, lid
        for namespace, name, dims in watched:
            if namespace == NAMESPACE:
                assert name in emitted, (lid, name)
                assert dims == {"service": service, "stage": {"Ref": "Stage"}}, lid
            elif namespace == "AWS/SQS":
                assert dims["QueueName"]["Fn::GetAtt"][0] in queues, lid
                assert dims["QueueName"]["Fn::GetAtt"][1] == "QueueName", lid
            elif namespace == "AWS/Lambda":
                assert dims["FunctionName"]["Ref"] in functions, lid
            elif namespace == "AWS/ApiGateway":
                assert dims == {"ApiId": {"Ref": "HttpApi"}, "Stage": "$default"}, lid
            else:
                pytest.fail(f"{lid}: unexpected namespace {namespace}")


def test_every_threshold_parameter_exists(template: Template) -> None:
    for lid, alarm in alarms(template).items():
        threshold = alarm["Threshold"]
        if isinstance(threshold, dict):
            assert threshold["Ref"] in template.parameters, lid


def test_any_record_in_any_dead_letter_queue_raises_an_alarm(template: Template) -> None:
    watched = {next(iter(alarm_metrics(a)))[2]["QueueName"]["Fn::GetAtt"][0]
               for a in alarms(template).values()
               if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
               and a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold"}
    assert dead_letter_queues(template) <= watched


def test_every_send_lane_alarms_when_its_oldest_record_is_older_than_its_threshold(template: Template) -> None:
    by_queue = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a for a in alarms(template).values()
                if a.get("MetricName") == "ApproximateAgeOfOldestMessage"}
    for lane in SEND_LANES:
        alarm = by_queue[f"SendQueue{lane}"]
        assert alarm["Threshold"] == {"Ref": f"QueueAgeAlarmSeconds{lane}"}
        assert template.parameters[f"QueueAgeAlarmSeconds{lane}"]["Type"] == "Number"


def test_the_sender_error_rate_and_api_5xx_are_alarmed(template: Template) -> None:
    watched = {(ns, name, json.dumps(dims, sort_keys=True))
               for a in alarms(template).values() for ns, name, dims in alarm_metrics(a)}
    sender = json.dumps({"FunctionName": {"Ref": "SenderFunction"}}, sort_keys=True)
    assert ("AWS/Lambda", "Errors", sender) in watched and ("AWS/Lambda", "Invocations", sender) in watched
    assert any(ns == NAMESPACE and name == "MessagesFailed" for ns, name, _ in watched)
    assert any(ns == "AWS/ApiGateway" and name == "5xx" for ns, name, _ in watched)


def test_the_reporter_parks_a_batch_itself_well_before_the_report_queues_max_receive_count(template: Template) -> None:
    from mail_proxy.usecases.reporting import PARK_AFTER_ATTEMPTS

    # receives also count hides for quiet and records skipped behind a failing one: SQS's limit is a safety net
    assert template.properties("ReportQueue")["RedrivePolicy"]["maxReceiveCount"] >= 10 * PARK_AFTER_ATTEMPTS


# ------------------------------------------------------------------------------------------------ queries


def queries(template: Template) -> dict[str, dict[str, Any]]:
    return {lid: dict(template.properties(lid)) for lid in template.logical_ids("AWS::Logs::QueryDefinition")}


def test_saved_queries_read_log_groups_of_the_template_and_are_named_per_stage(template: Template) -> None:
    groups = ids_of_type(template, "AWS::Logs::LogGroup")
    found = queries(template)
    assert {q["Name"]["Fn::Sub"].rsplit("/", 1)[1] for q in found.values()} >= {
        "message-life", "tenant-failures", "report-failures"}
    for lid, query in found.items():
        assert query["Name"]["Fn::Sub"].startswith("mail-proxy-${Stage}/"), lid
        assert query["LogGroupNames"] and all(g["Ref"] in groups for g in query["LogGroupNames"]), lid


def test_the_message_life_query_reads_every_function_that_handles_a_message(template: Template) -> None:
    [life] = [q for q in queries(template).values() if q["Name"]["Fn::Sub"].endswith("/message-life")]
    read = {g["Ref"] for g in life["LogGroupNames"]}
    for function in template.logical_ids("AWS::Serverless::Function"):
        if function != "AuthorizerFunction":  # it sees tokens, never messages
            assert log_group_of(template, function) in read, function
    assert "tenant_id" in life["QueryString"] and "message_ids like" in life["QueryString"]


def test_the_log_messages_the_queries_filter_on_are_logged_by_the_code(template: Template) -> None:
    code = "\n".join(p.read_text(encoding="utf-8") for p in [
        *Path(REPO_ROOT / "layers" / "mail_proxy" / "mail_proxy").rglob("*.py"),
        *Path(REPO_ROOT / "functions").glob("*/app.py")])
    for lid, query in queries(template).items():
        for text in re.findall(r'message = "([^"]+)"', query["QueryString"]):
            assert f'"{text}"' in code, (lid, text)
        for key in re.findall(r"\b(reason_class|message_ids|stream_event_ids|sqs_message_id)\b", query["QueryString"]):
            assert f'"{key}"' in code or f"{key}=" in code, (lid, key)


def test_every_function_logs_where_lambda_and_sam_logs_look(template: Template) -> None:
    for function in template.logical_ids("AWS::Serverless::Function"):
        group = template.properties(log_group_of(template, function))
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, function
        # no LoggingConfig elsewhere: the console's "View logs" and every tool find /aws/lambda/<name>
        assert "LoggingConfig" not in template.properties(function), function


def test_every_alarm_that_notifies_has_a_runbook_section(template: Template) -> None:
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for lid, alarm in operator_alarms(template).items():
        suffix = alarm["AlarmName"]["Fn::Sub"].removeprefix("mail-proxy-${Stage}-")
        lane_pattern = re.sub(r"(immediate|high|medium|low)", "<lane>", suffix)
        assert f"`{suffix}`" in runbook or f"`{lane_pattern}`" in runbook or suffix.startswith("send-dlq-"), lid
