"""Deploys are gradual and reversible, mail survives the stack, and the API can keep one public name.

Parsed from template.yaml: each function is published behind the alias ``live`` and moved by CodeDeploy with
alarms that roll it back; everything that holds mail or keys outlives a deleted or replaced stack; the optional
custom domain is also the base of the links the sender writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.template import Template, load_template

HOLDS_MAIL_OR_KEYS = ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::SecretsManager::Secret", "AWS::S3::Bucket",
                      "AWS::KMS::Key")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def functions(template: Template) -> list[str]:
    return template.logical_ids("AWS::Serverless::Function")


def test_every_function_is_published_behind_an_alias(template: Template) -> None:
    assert template.function_globals["AutoPublishAlias"] == "live"
    assert all("AutoPublishAlias" not in template.properties(f) for f in functions(template))


def test_every_function_shifts_traffic_gradually_and_rolls_back_on_its_alarms(template: Template) -> None:
    strategy = template.parameters["DeploymentStrategy"]
    assert strategy["Default"].startswith("Canary") and "AllAtOnce" in strategy["AllowedValues"]
    alarms = set(template.logical_ids("AWS::CloudWatch::Alarm"))
    for function in functions(template):
        preference = template.properties(function)["DeploymentPreference"]
        assert preference["Type"] == {"Ref": "DeploymentStrategy"}, function
        gates = [ref["Ref"] for ref in preference["Alarms"]]
        assert f"{function.removesuffix('Function')}DeployErrorsAlarm" in gates, function
        assert set(gates) <= alarms, function


def test_a_deploy_gate_watches_the_alias_of_its_own_function(template: Template) -> None:
    for function in functions(template):
        gate = template.properties(f"{function.removesuffix('Function')}DeployErrorsAlarm")
        dimensions = {d["Name"]: d["Value"] for d in gate["Dimensions"]}
        assert dimensions == {"FunctionName": {"Ref": function}, "Resource": {"Fn::Sub": f"${{{function}}}:live"}}
        assert gate["MetricName"] == "Errors" and gate["Threshold"] == 0


def test_the_api_authorizer_invokes_the_published_alias(template: Template) -> None:
    authorizer = template.properties("HttpApi")["Auth"]["Authorizers"]["TokenAuthorizer"]
    assert authorizer["FunctionArn"] == {"Ref": "AuthorizerFunction.Alias"}


@pytest.mark.parametrize("kind", HOLDS_MAIL_OR_KEYS)
def test_what_holds_mail_or_keys_survives_a_deleted_or_replaced_stack(template: Template, kind: str) -> None:
    kept = {"IdempotencyTable"}  # request fingerprints for 1 hour: nothing to keep
    for lid in template.logical_ids(kind):
        if lid in kept:
            continue
        resource: dict[str, Any] = dict(template.resource(lid))
        assert resource.get("DeletionPolicy") == "Retain", lid
        assert resource.get("UpdateReplacePolicy") == "Retain", lid


def test_alarms_watch_throttles_the_authorizer_and_the_stream(template: Template) -> None:
    throttles = template.properties("ThrottlesAlarm")
    metrics = [q["MetricStat"]["Metric"] for q in throttles["Metrics"] if "MetricStat" in q]
    assert {m["Dimensions"][0]["Value"]["Ref"] for m in metrics} == set(functions(template))
    assert all(m["MetricName"] == "Throttles" for m in metrics)
    authorizer = template.properties("AuthorizerErrorsAlarm")
    assert authorizer["MetricName"] == "Errors"
    assert authorizer["Dimensions"][0]["Value"] == {"Ref": "AuthorizerFunction"}
    age = template.properties("StreamIteratorAgeAlarm")
    [metric] = [q["MetricStat"]["Metric"] for q in age["Metrics"] if "MetricStat" in q]
    assert metric["MetricName"] == "IteratorAge" and metric["Dimensions"][0]["Value"] == {"Ref": "ReportRouterFunction"}
    assert age["Threshold"] == {"Ref": "StreamIteratorAgeAlarmSeconds"}


def test_the_custom_domain_is_off_by_default_and_then_the_base_of_links(template: Template) -> None:
    assert template.parameters["CustomDomainName"]["Default"] == ""
    assert not template.condition("HasCustomDomain", {})
    for lid in ("ApiDomainName", "ApiDomainMapping"):
        assert template.resource(lid)["Condition"] == "HasCustomDomain"
    assert template.resource("ApiDomainRecord")["Condition"] == "HasCustomDomainRecord"
    chosen = {"CustomDomainName": "mail-api.example.com",
              "CustomDomainCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}
    assert template.condition("HasCustomDomain", chosen)
    sender_env = template.properties("SenderFunction")["Environment"]["Variables"]["PUBLIC_API_URL"]
    assert template.resolve(sender_env, {**chosen, "HttpApi": "abc123"}) == "https://mail-api.example.com"
    assert template.resolve(sender_env, {"HttpApi": "abc123"}).startswith("https://abc123.execute-api.")


def test_a_custom_domain_without_a_certificate_is_refused_before_anything_is_created(template: Template) -> None:
    rule = template.document["Rules"]["CustomDomainNeedsCertificate"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CustomDomainCertificateArn"}, ""]}]}
