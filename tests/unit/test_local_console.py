"""The local stack's console and ports, without starting it: port variables, the busy-port line, the
one-line form of a handler's log entry, and the stand-in application that receives delivery reports."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from local.client_app import PREFIX, StandInApplication
from local.console import handler_line
from local.ports import BusyPort, busy_message, busy_ports
from local.stack import parse_args


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_ports_come_from_the_documented_variables_and_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAIL_PROXY_PORT", raising=False)
    monkeypatch.delenv("MAIL_PROXY_SMTP_PORT", raising=False)
    assert (parse_args([]).port, parse_args([]).smtp_port) == (8000, 2525)
    monkeypatch.setenv("MAIL_PROXY_PORT", "8080")
    monkeypatch.setenv("MAIL_PROXY_SMTP_PORT", "2626")
    assert (parse_args([]).port, parse_args([]).smtp_port) == (8080, 2626)
    options = parse_args(["--port", "9000", "--smtp-port=0"])
    assert (options.port, options.smtp_port) == (9000, 0)


def test_a_port_variable_that_is_not_a_number_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MAIL_PROXY_SMTP_PORT", "twenty-five")
    with pytest.raises(SystemExit) as exited:
        parse_args([])
    assert exited.value.code == 2
    assert "MAIL_PROXY_SMTP_PORT='twenty-five' is not a port number" in capsys.readouterr().err


def test_a_busy_port_is_found_before_anything_starts(listening: int) -> None:
    (busy,) = busy_ports("127.0.0.1", {"HTTP API": listening, "SMTP sink": 0})
    assert busy.role == "HTTP API" and busy.port == listening and busy.in_use


@pytest.mark.parametrize(("via", "expected"), [
    ("make", "use other ports: make run PORT="),
    ("mail-proxy", "use other ports: mail-proxy start local --port "),
    ("", "use other ports: python -m local --port "),
])
def test_the_busy_port_line_gives_a_command_with_a_free_port_in_the_form_used(
        monkeypatch: pytest.MonkeyPatch, listening: int, via: str, expected: str) -> None:
    monkeypatch.setenv("MAIL_PROXY_LOCAL_VIA", via)
    line = busy_message("127.0.0.1", listening, 2525, [BusyPort("HTTP API", listening, "in use", True)])
    assert "\n" not in line and f"HTTP API port {listening} is in use" in line and expected in line
    suggested = int(line.rsplit(expected, 1)[1].split()[0])
    assert suggested > listening
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))  # the suggested port really is free
    assert "SMTP" not in line.split("use other ports:")[1]  # only the busy port changes


def test_a_handler_warning_is_one_line_with_its_own_fields_and_no_lambda_context() -> None:
    entry = {"level": "WARNING", "location": "record_handler:57", "message": "report not acknowledged; retrying later",
             "timestamp": "2026-12-02 02:42:07,361+0000", "service": "mail-proxy", "cold_start": False,
             "function_name": "local-ReporterFunction", "function_arn": "arn:aws:lambda:...",
             "function_request_id": "b227", "tenant_id": "acme",
             "reason": "report call failed: [Errno 111] Connection refused", "retry_in_s": 60}
    line = handler_line(entry)
    assert "\n" not in line
    assert "WARNING Reporter: report not acknowledged; retrying later" in line
    assert "tenant_id=acme" in line and 'reason="report call failed: [Errno 111] Connection refused"' in line
    assert "function_arn" not in line and "cold_start" not in line and "b227" not in line


def test_a_handler_exception_keeps_its_traceback() -> None:
    entry = {"level": "ERROR", "message": "send record failed", "function_name": "local-SenderFunction",
             "exception": "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'id'",
             "exception_name": "KeyError"}
    line = handler_line(entry)
    assert line.splitlines()[0].endswith("ERROR Sender: send record failed")
    assert line.splitlines()[-1] == "KeyError: 'id'"


def test_the_stand_in_application_acknowledges_and_lists_reports() -> None:
    app = StandInApplication(keep=2)
    report = {"delivery_report": [{"id": "order-1", "event": "sent", "sent_ts": 1}]}
    answer = app("POST", f"{PREFIX}/acme/mail-proxy/sync", json.dumps(report).encode())
    assert answer is not None and answer.status == 200 and json.loads(answer.body) == {"ok": True}
    listed = app("GET", PREFIX, b"")
    assert listed is not None and listed.status == 200
    (kept,) = json.loads(listed.body)["reports"]
    assert kept["application"] == "acme" and kept["delivery_report"] == report["delivery_report"]


def test_the_stand_in_application_refuses_what_is_not_a_report_and_leaves_other_paths_alone() -> None:
    app = StandInApplication()
    refused = app("POST", f"{PREFIX}/acme/attachments", b'{"storage_path": "x"}')
    assert refused is not None and refused.status == 404 and "detail" in json.loads(refused.body)
    assert app("POST", "/commands/add-messages", b"{}") is None
    assert app("POST", "/_local/application", b"{}") is None
    assert app.received == []


class BatchProcessingError(Exception):
    """Named as Powertools' batch processor names the error it raises when every record of a batch failed."""


class _NoDeletes:
    def delete_message_batch(self, **kwargs: object) -> dict[str, object]:
        raise AssertionError("a failed batch deletes nothing")


@pytest.mark.parametrize(("error", "traceback_logged"), [(BatchProcessingError("all records failed"), False),
                                                         (KeyError("id"), True)])
def test_a_batch_whose_records_all_failed_is_no_traceback_but_a_crash_is(
        caplog: pytest.LogCaptureFixture, error: Exception, traceback_logged: bool) -> None:
    from local.lambdas import LocalFunction
    from local.poller import PolledQueue, SqsPoller

    def handler(event: object, context: object) -> object:
        raise error

    queue = PolledQueue(url="http://127.0.0.1:1/queue", arn="arn:aws:sqs:us-east-1:123456789012:ReportQueue.fifo")
    poller = SqsPoller(LocalFunction("local-ReporterFunction", handler), [queue])
    message = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "{}"}
    with caplog.at_level("DEBUG", logger="local.poller"):
        poller._handle(_NoDeletes(), queue, [message])
    assert any(record.exc_info for record in caplog.records) is traceback_logged
    assert caplog.records, "the failure is logged either way"
