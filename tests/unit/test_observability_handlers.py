"""Every function is logged, traced and (where it counts anything) measured the same way, without leaking.

Each handler is invoked with its sample event from events/ (against moto) and watched from outside: the
log lines never carry the event (requests carry tokens, passwords and bodies), the logger holds the
invocation's context and nothing of the previous one, the tracer opens the handler's subsegment and never
records a response, and a function that counts flushes its metrics at the end of every invocation. A new
function in functions/ is checked as soon as its sample event exists (and fails until it does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from local.lambdas import LocalFunction
from local.template import REPO_ROOT, load_template
from mail_proxy.adapters import observability
from mail_proxy.adapters.observability import _Unrecorded
from tests.fixtures.api import ApiClient, load_function_module
from tests.fixtures.stack import Stack

FUNCTIONS = sorted(p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py"))
EVENTS = REPO_ROOT / "events"
SAMPLE_EVENT = {"api": "api_health.json", "authorizer": "authorizer_request.json",
                "bounce_poller": "bounce_poller_tick.json", "report_router": "report_router_stream.json",
                "reporter": "reporter_sqs_fifo.json", "scheduler": "scheduler_tick.json",
                "sender": "sender_sqs_batch.json"}
NEVER_COUNTS = {"authorizer"}  # answers allow/deny for the gateway, on every request; nothing to count
API_GATEWAY = {"api", "authorizer"}
SECRET = "probe-secret-that-must-never-be-logged-0042"
PROBE_METRIC = "ObservabilityProbe"


class _Segment(_Unrecorded):
    """The layer's silent subsegment, but keeping what is put in its metadata."""

    def __init__(self, name: str, seen: Tracing) -> None:
        self.name, self.seen = name, seen

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.seen.metadata.append((self.name, key, value))

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class Tracing(BaseProvider):
    """A tracing provider that remembers the subsegments opened and the metadata put on them."""

    def __init__(self) -> None:
        self.subsegments: list[str] = []
        self.metadata: list[tuple[str, str, Any]] = []

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        self.subsegments.append(str(name))
        yield _Segment(str(name), self)

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> Any:
        self.subsegments.append(str(name))
        yield _Segment(str(name), self)

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata.append(("", key, value))

    def patch(self, modules: Any) -> None:
        pass

    def patch_all(self) -> None:
        pass


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {json.dumps(record.__dict__, default=str)}")


class Invocation:
    def __init__(self, name: str, event: dict[str, Any], context: Any, result: Any, error: BaseException | None,
                 logged: str, printed: str, tracing: Tracing) -> None:
        self.name, self.event, self.context, self.result, self.error = name, event, context, result, error
        self.logged, self.printed, self.tracing = logged, printed, tracing


def sample_event(name: str) -> dict[str, Any]:
    assert name in SAMPLE_EVENT, f"functions/{name} has no sample event in events/ (add one, and list it here)"
    event: dict[str, Any] = json.loads((EVENTS / SAMPLE_EVENT[name]).read_text(encoding="utf-8"))
    event["probe"] = {"password": SECRET, "token": SECRET}  # what a leaked event would show
    return event


@pytest.fixture
def invoke(stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    ApiClient().create_tenant("acme")

    def run(name: str) -> Invocation:
        module = load_function_module(name)
        for cached in ("wiring", "poller", "dispatcher", "repository"):
            if hasattr(getattr(module, cached, None), "cache_clear"):
                getattr(module, cached).cache_clear()
        tracing = Tracing()
        monkeypatch.setattr(observability.tracer, "provider", tracing)
        observability.logger.append_keys(left_over="from the previous invocation")
        observability.metrics.add_metric(name=PROBE_METRIC, unit=MetricUnit.Count, value=1)
        lines = _Lines()
        observability.logger.addHandler(lines)
        function = LocalFunction(f"local-{name}", module.lambda_handler, timeout_seconds=60)
        context = function.context()
        capsys.readouterr()
        result: Any = None
        error: BaseException | None = None
        try:
            with function.scope():
                result = module.lambda_handler(event := sample_event(name), context)
        except Exception as raised:  # a handler may refuse the sample; what it logged and flushed still counts
            error = raised
        finally:
            observability.logger.removeHandler(lines)
            printed = capsys.readouterr()
            observability.metrics.clear_metrics()
        return Invocation(name, event, context, result, error, "\n".join(lines.lines), printed.out + printed.err,
                          tracing)

    return run


def emitted_metric_names(printed: str) -> set[str]:
    names: set[str] = set()
    for line in printed.splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and "_aws" in document:
                for directive in document["_aws"]["CloudWatchMetrics"]:
                    names.update(metric["Name"] for metric in directive["Metrics"])
    return names


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_handler_logs_with_its_invocation_context_and_never_its_event(invoke: Any, name: str) -> None:
    call = invoke(name)
    assert SECRET not in call.logged and SECRET not in call.printed
    keys = observability.logger.get_current_keys()
    assert keys.get("function_request_id") == call.context.aws_request_id, keys
    assert "left_over" not in keys  # clear_state: nothing of the previous invocation


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_handler_is_traced_without_its_response(invoke: Any, name: str) -> None:
    call = invoke(name)
    assert call.error is None, call.error  # a response was produced, so a captured one would show
    assert "## lambda_handler" in call.tracing.subsegments
    responses = [(segment, key) for segment, key, _ in call.tracing.metadata if key.endswith(" response")]
    assert not responses


@pytest.mark.parametrize("name", sorted(set(FUNCTIONS) - NEVER_COUNTS))
def test_a_function_that_counts_flushes_its_metrics(invoke: Any, name: str) -> None:
    """The metrics added during an invocation are published (an EMF line) when it ends, not kept for later."""
    call = invoke(name)
    assert PROBE_METRIC in emitted_metric_names(call.printed), call.printed[-2000:]


@pytest.mark.parametrize("name", sorted(API_GATEWAY))
def test_api_requests_carry_the_api_gateway_request_id_as_correlation_id(invoke: Any, name: str) -> None:
    call = invoke(name)
    assert observability.logger.get_current_keys().get("correlation_id") == call.event["requestContext"]["requestId"]


def test_every_traced_method_records_no_response() -> None:
    """Methods traced deeper than the handler (read from the source: most only run on paths a sample event
    does not take) pass capture_response=False too."""
    files = [*(REPO_ROOT / "functions").glob("*/app.py"),
             *(REPO_ROOT / "layers" / "mail_proxy" / "mail_proxy").rglob("*.py")]
    for path in files:
        text = Path(path).read_text("utf-8")
        for call in re.findall(r"@tracer\.capture_(?:method|lambda_handler)\(([^)]*)\)", text):
            assert "capture_response=False" in call, path
        assert not re.search(r"@tracer\.capture_(?:method|lambda_handler)\s*$", text, re.MULTILINE), path


def test_tracing_is_active_for_every_function() -> None:
    template = load_template()
    assert template.function_globals["Tracing"] == "Active"
    for function in template.logical_ids("AWS::Serverless::Function"):
        assert template.properties(function).get("Tracing", "Active") == "Active", function
