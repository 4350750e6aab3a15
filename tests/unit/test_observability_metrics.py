"""Metric shape: a fixed namespace, the dimensions service and stage only, and one blob per failure class."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from mail_proxy.adapters.observability import NAMESPACE, FailureClass, count_failures_by_class, id_list, metrics


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")


def blobs(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_every_function_metric_has_only_the_service_and_stage_dimensions() -> None:
    metrics.add_metric(name="MessagesSent", unit=MetricUnit.Count, value=1)
    try:
        blob = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE == "MailProxy"
    assert [sorted(d) for d in directive["Dimensions"]] == [["service", "stage"]]


def test_failures_by_class_are_one_blob_per_class_with_a_reason_class_dimension(
        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    count_failures_by_class({FailureClass.SMTP_PERMANENT: 2, FailureClass.RATE_LIMIT: 1})
    found = blobs(capsys.readouterr().out)
    assert [(b["reason_class"], b["MessagesFailed"]) for b in found] == [("smtp_permanent", [2.0]),
                                                                          ("rate_limit", [1.0])]
    for blob in found:
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "MailProxy"
        assert directive["Dimensions"] == [["service", "stage", "reason_class"]]
        assert blob["service"] and blob["stage"]


def test_a_class_without_failures_emits_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    count_failures_by_class({FailureClass.MALFORMED: 0})
    assert blobs(capsys.readouterr().out) == []


def test_disabled_metrics_print_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    capsys.readouterr()
    count_failures_by_class({FailureClass.MALFORMED: 1})
    assert capsys.readouterr().out == ""


def test_failure_classes_are_a_small_fixed_set_of_snake_case_names() -> None:
    values = [c.value for c in FailureClass]
    assert len(values) == len(set(values)) <= 12
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", v) for v in values)
    assert {"smtp_permanent", "retries_exhausted", "rate_limit", "malformed", "account_missing",
            "suppressed"} <= set(values)


def test_a_list_of_ids_is_one_field_in_which_the_message_life_query_finds_exactly_one_id() -> None:
    line = id_list(["order-1", "order-10", "x1order-1"])
    assert line == "order-1 order-10 x1order-1"
    pattern = re.compile(r"(^| )order-1( |$)")  # as in the saved message-life query
    assert len(pattern.findall(line)) == 1
    assert not pattern.search(id_list(["order-10", "order-11"]))
