"""The smaller pieces of the local stack: SMTP sink, schedule ticker, dev secrets, handler loading, filters."""

from __future__ import annotations

import base64
import email
import smtplib
import stat
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from local.dev_secrets import SecretConfigError, load_dev_secrets, new_admin_token
from local.event_filter import matches, matches_any
from local.lambdas import FunctionMissing, FunctionTimedOut, LocalFunction, load_function
from local.smtp_sink import SmtpSink
from local.template import FunctionSpec
from local.ticker import ScheduleTicker, request_tick

# -- SMTP sink ----------------------------------------------------------------------------------------------


def test_sink_keeps_each_message_with_its_envelope(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path / "mail", port=0, echo=False)
    sink.start()
    try:
        message = EmailMessage()
        message["From"] = "app@example.com"
        message["To"] = "to@example.com"
        message["Subject"] = "Hello"
        message.set_content("body")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            client.login("any-user", "any-password")
            client.send_message(message, to_addrs=["to@example.com", "hidden@example.com"])
    finally:
        sink.stop()
    (stored,) = sorted((tmp_path / "mail").glob("*.eml"))
    parsed = email.message_from_bytes(stored.read_bytes())
    assert parsed["X-Sink-Envelope-From"] == "<app@example.com>"
    assert parsed["X-Sink-Envelope-To"] == "to@example.com, hidden@example.com"
    assert parsed["Subject"] == "Hello"
    assert sink.received == 1
    assert not list((tmp_path / "mail").glob(".*.tmp"))


def test_sink_accepts_mail_without_auth(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, port=0, echo=False)
    sink.start()
    try:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    finally:
        sink.stop()
    assert len(list(tmp_path.glob("*.eml"))) == 1


# -- schedule ticker ----------------------------------------------------------------------------------------


def test_ticker_invokes_with_a_scheduled_event_every_period() -> None:
    events: list[dict[str, Any]] = []
    ticker = ScheduleTicker(LocalFunction("scheduler", lambda e, c: events.append(e)), period_seconds=0.05)
    ticker.start()
    try:
        deadline = time.monotonic() + 5
        while len(events) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ticker.stop()
    assert len(events) >= 3
    assert events[0]["detail-type"] == "Scheduled Event" and events[0]["source"] == "aws.events"
    assert events[0]["resources"][0].startswith("arn:aws:events:us-east-1:")


def test_request_tick_runs_at_once_instead_of_waiting_for_the_period() -> None:
    ran = threading.Event()
    ticker = ScheduleTicker(LocalFunction("scheduler", lambda e, c: ran.set()), period_seconds=3600)
    ticker.start()
    try:
        ticker.request_tick()
        assert ran.wait(5)
    finally:
        started = time.monotonic()
        ticker.stop()
    assert time.monotonic() - started < 1


def test_module_level_request_tick_wakes_every_running_ticker() -> None:
    ran = threading.Event()
    ticker = ScheduleTicker(LocalFunction("scheduler", lambda e, c: ran.set()), period_seconds=3600)
    ticker.start()
    try:
        assert request_tick() >= 1
        assert ran.wait(5)
    finally:
        ticker.stop()


def test_ticker_survives_a_failing_run() -> None:
    calls: list[int] = []

    def scheduler(event: Any, context: Any) -> None:
        calls.append(1)
        raise RuntimeError("table throttled")

    ticker = ScheduleTicker(LocalFunction("scheduler", scheduler), period_seconds=3600)
    ticker.tick()
    ticker.tick()
    assert len(calls) == 2 and ticker.ticks == 2


# -- dev secrets --------------------------------------------------------------------------------------------


def test_generated_secrets_are_private_files_reused_on_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GMP_API_TOKEN", raising=False)
    monkeypatch.delenv("MAIL_PROXY_ENCRYPTION_KEY", raising=False)
    first = load_dev_secrets(tmp_path)
    second = load_dev_secrets(tmp_path)
    assert first.admin_token == second.admin_token and first.encryption_key == second.encryption_key
    assert len(base64.b64decode(first.encryption_key)) == 32
    for name in ("admin_token", "encryption_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "generated" in first.token_source and "read from" in second.token_source


def test_generated_admin_tokens_never_look_like_a_command_line_option() -> None:
    assert all(new_admin_token().startswith("adm_") for _ in range(200))


def test_environment_and_option_take_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(bytes(32)).decode()
    monkeypatch.setenv("GMP_API_TOKEN", "from-env")
    monkeypatch.setenv("MAIL_PROXY_ENCRYPTION_KEY", key)
    assert load_dev_secrets(tmp_path).admin_token == "from-env"
    assert load_dev_secrets(tmp_path, api_token="from-option").admin_token == "from-option"
    assert load_dev_secrets(tmp_path).encryption_key == key
    assert not (tmp_path / "admin_token").exists()


def test_a_malformed_key_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_ENCRYPTION_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(SecretConfigError, match="32 bytes"):
        load_dev_secrets(tmp_path)


# -- handler loading ----------------------------------------------------------------------------------------


def _spec(code_dir: Path, timeout: float = 3) -> FunctionSpec:
    return FunctionSpec("DemoFunction", code_dir, "app", "lambda_handler", timeout, 128)


def test_functions_named_app_py_load_as_separate_modules(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(
            f"def lambda_handler(event, context):\n    return ('{name}', context.function_name)\n"
        )
    one = load_function(FunctionSpec("OneFunction", tmp_path / "one", "app", "lambda_handler", 3, 128), "local-One")
    two = load_function(FunctionSpec("TwoFunction", tmp_path / "two", "app", "lambda_handler", 3, 128), "local-Two")
    assert one.invoke({}) == ("one", "local-One")
    assert two.invoke({}) == ("two", "local-Two")


def test_another_instance_of_a_function_has_its_own_module_state(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "calls = []\n"
        "def lambda_handler(event, context):\n    calls.append(event)\n    return len(calls)\n"
    )
    first = load_function(_spec(tmp_path), "local-Demo")
    second = load_function(_spec(tmp_path), "local-Demo", instance=1, init_lock=first._init_lock)
    assert [first.invoke({}), first.invoke({}), second.invoke({})] == [1, 2, 1]  # a container of its own
    assert second._init_lock is first._init_lock  # first invocations still run one at a time


def test_context_carries_the_deadline_from_the_timeout(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "def lambda_handler(event, context):\n"
        "    return context.get_remaining_time_in_millis(), context.memory_limit_in_mb, context.aws_request_id\n"
    )
    function = load_function(_spec(tmp_path, timeout=30), "local-Demo")
    remaining, memory, request_id = function.invoke({})
    assert 29_000 < remaining <= 30_000 and memory == 128 and len(request_id) == 36


def test_missing_code_is_reported_not_imported(tmp_path: Path) -> None:
    with pytest.raises(FunctionMissing):
        load_function(_spec(tmp_path), "local-Demo")


def test_a_handler_returning_after_its_timeout_has_timed_out() -> None:
    function = LocalFunction("slow", lambda e, c: time.sleep(0.2), timeout_seconds=0.05)
    with pytest.raises(FunctionTimedOut):
        function.invoke({})


# -- event filters ------------------------------------------------------------------------------------------


def test_filter_patterns() -> None:
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": {"pk": {"S": "MSG#1"}, "n": {"N": "5"}}}}
    assert matches({"eventName": ["INSERT", "MODIFY"]}, record)
    assert not matches({"eventName": ["REMOVE"]}, record)
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "MSG#"}]}}}}, record)
    assert matches({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1, "<=", 5]}]}}}}, record)
    assert matches({"dynamodb": {"OldImage": [{"exists": False}]}}, record)
    assert not matches({"dynamodb": {"NewImage": {"gone": [{"exists": True}]}}}, record)
    assert matches({"eventName": [{"anything-but": ["REMOVE"]}]}, record)
    assert matches_any([], record)
    assert matches_any([{"eventName": ["REMOVE"]}, {"eventName": ["INSERT"]}], record)
