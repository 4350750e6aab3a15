"""Every function is logged, traced and (where it counts anything) measured the same way, without leaking.

Read from the source so a new function cannot skip it: the handler never logs its event (requests carry
tokens, passwords and bodies), the tracer never records a response, and every record handler's subsegment
records no response either.
"""

from __future__ import annotations

import re

import pytest

from local.template import REPO_ROOT, load_template

FUNCTIONS = sorted(p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py"))


def source(name: str) -> str:
    return (REPO_ROOT / "functions" / name / "app.py").read_text(encoding="utf-8")


def handler_decorators(text: str) -> str:
    match = re.search(r"((?:^@.*\n(?:^\s+.*\n)*)+)^def lambda_handler", text, re.MULTILINE)
    assert match, "lambda_handler with decorators"
    return match.group(1)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_handler_injects_the_lambda_context_into_logs_without_logging_the_event(name: str) -> None:
    decorators = handler_decorators(source(name))
    assert "@logger.inject_lambda_context(" in decorators
    assert "log_event=False" in decorators and "clear_state=True" in decorators


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_handler_is_traced_without_its_response(name: str) -> None:
    assert "@tracer.capture_lambda_handler(capture_response=False)" in handler_decorators(source(name))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_function_that_counts_flushes_its_metrics(name: str) -> None:
    text = source(name)
    layer_calls = {"sender": "delivery", "api": "submission"}  # where the metric calls of these live
    if "metrics." in text or name in layer_calls:
        assert "@metrics.log_metrics" in handler_decorators(text)


def test_every_traced_method_records_no_response() -> None:
    files = [*(REPO_ROOT / "functions").glob("*/app.py"),
             *(REPO_ROOT / "layers" / "mail_proxy" / "mail_proxy").rglob("*.py")]
    for path in files:
        for call in re.findall(r"@tracer\.capture_(?:method|lambda_handler)\(([^)]*)\)", path.read_text("utf-8")):
            assert "capture_response=False" in call, path
        assert not re.search(r"@tracer\.capture_(?:method|lambda_handler)\s*$", path.read_text("utf-8"),
                             re.MULTILINE), path


def test_api_requests_carry_the_api_gateway_request_id_as_correlation_id() -> None:
    for name in ("api", "authorizer"):
        assert "correlation_paths.API_GATEWAY_HTTP" in handler_decorators(source(name))


def test_tracing_is_active_for_every_function() -> None:
    template = load_template()
    assert template.function_globals["Tracing"] == "Active"
    for function in template.logical_ids("AWS::Serverless::Function"):
        assert template.properties(function).get("Tracing", "Active") == "Active", function
