"""Template settings that bound what a leaked or revoked credential can do: the authorizer cache, the access
log, the admin token secret the api reads, and the tenant buckets the sender may read."""

from __future__ import annotations

import pytest

from local.iam import function_grants
from local.template import Template, load_template

ADMIN_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AdminTokenSecret"


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def test_the_authorizer_cache_is_bounded_at_five_minutes(template: Template) -> None:
    parameter = template.parameters["AuthorizerCacheSeconds"]
    assert parameter["MinValue"] == 0 and parameter["MaxValue"] <= 300
    assert parameter["Default"] <= parameter["MaxValue"]
    identity = template.properties("HttpApi")["Auth"]["Authorizers"]["TokenAuthorizer"]["Identity"]
    assert identity["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheSeconds"}


def test_the_access_log_never_holds_a_raw_path(template: Template) -> None:
    """`/files/<token>` is a credential valid for up to 90 days: the log names the route, not the path."""
    log_format = template.properties("HttpApi")["AccessLogSettings"]["Format"]
    assert "$context.routeKey" in log_format
    for raw in ("$context.path", "$context.http.path", "$context.resourcePath", "$request.path"):
        assert raw not in log_format


def test_the_api_is_given_and_granted_the_admin_token_secret(template: Template) -> None:
    """Without it the check that a chosen tenant token is not the admin token is skipped in AWS."""
    variables = template.properties("ApiFunction")["Environment"]["Variables"]
    assert variables["ADMIN_SECRET_ID"] == {"Ref": "AdminTokenSecret"}
    assert ("secretsmanager:GetSecretValue", ADMIN_SECRET) in {
        (g.action, g.resource) for g in function_grants(template, "ApiFunction")}


@pytest.mark.parametrize("function", ["SenderFunction", "ReporterFunction", "BouncePollerFunction",
                                      "SchedulerFunction", "ReportRouterFunction"])
def test_only_the_authorizer_and_the_api_may_read_the_admin_token_hash(template: Template, function: str) -> None:
    assert "ADMIN_SECRET_ID" not in (template.properties(function).get("Environment") or {}).get("Variables", {})
    assert not any(g.resource == ADMIN_SECRET for g in function_grants(template, function))


def test_tenant_buckets_are_granted_only_as_the_operator_lists_them(template: Template) -> None:
    def foreign(function: str, parameters: dict[str, list[str]] | None = None) -> set[str]:
        return {g.resource for g in function_grants(template, function, parameters)
                if g.action == "s3:GetObject" and "AttachmentBucket" not in g.resource}

    assert foreign("SenderFunction") == set()
    listed = {"TenantAttachmentObjectArns": ["arn:aws:s3:::acme-invoices/*", "arn:aws:s3:::beta/in/*"]}
    assert foreign("SenderFunction", listed) == {"arn:aws:s3:::acme-invoices/*", "arn:aws:s3:::beta/in/*"}
    assert foreign("ApiFunction", listed) == set()
