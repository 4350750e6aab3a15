"""`python -m local` end to end, with dummy functions wired by a fixture template.

The real handlers are covered by tests/e2e; these tests pin the stack's own wiring: environment from the
template, the authorizer in front of the api, the api's queue reaching the sender, the sender's mail reaching
the sink, the stream feeding the reporter, the schedule ticking, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.harness import RunningStack, running_stack

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_template.yaml"


@pytest.fixture(scope="module")
def fixture_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("fixture-stack"), template=FIXTURE, args=["--schedule-seconds=0.3"]
    ) as running:
        yield running


def eventually(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_health_needs_no_token(fixture_stack: RunningStack) -> None:
    answer = fixture_stack.request("GET", "/health", admin=False)
    assert answer.status == 200 and answer.json() == {"status": "ok"}


def test_missing_token_is_401_and_an_unknown_one_is_401_from_the_authorizer(fixture_stack: RunningStack) -> None:
    assert fixture_stack.request("GET", "/whoami", admin=False).status == 401
    assert fixture_stack.request("GET", "/whoami", token="unknown").status == 401
    assert fixture_stack.request("GET", "/whoami", token="deny-me").status == 403


def test_functions_see_the_template_environment_resolved_locally(fixture_stack: RunningStack) -> None:
    answer = fixture_stack.request("GET", "/whoami")
    assert answer.status == 200
    body = answer.json()
    assert body["authorizer"] == {"lambda": {"role": "admin", "function": "local-AuthorizerFunction"}}
    env = body["env"]
    assert env["TABLE_NAME"] == "local-MailTable"
    assert env["SEND_QUEUE_HIGH_URL"].startswith("http://127.0.0.1:")
    assert env["SEND_QUEUE_HIGH_URL"].endswith("/123456789012/local-SendQueueHigh")
    assert env["SECRET_ID"] is None and env["IMPORTED"] is None and env["UNUSED_FLAG"] is None
    assert env["MAX_BODY_BYTES"] == "1048576" and env["STAGE_LABEL"] == "local-us-east-1"
    assert env["MAIL_PROXY_LOCAL"] == "1" and env["MAIL_PROXY_ALLOW_LOOPBACK"] == "1"


def test_api_crash_is_a_gateway_500_with_the_traceback_in_the_log(fixture_stack: RunningStack) -> None:
    answer = fixture_stack.request("GET", "/crash")
    assert answer.status == 500 and answer.json() == {"message": "Internal Server Error"}
    assert "RuntimeError: fixture crash" in fixture_stack.log_text()


def test_queued_message_is_delivered_to_the_sink_and_reported(fixture_stack: RunningStack) -> None:
    message = {
        "id": "m1",
        "priority": "high",
        "to": "rcpt@example.com",
        "subject": "Hi",
        "smtp_port": fixture_stack.smtp_port,
    }
    assert fixture_stack.request("POST", "/send", message).status == 202
    (mail,) = fixture_stack.wait_for_mail(1)
    text = mail.read_text()
    assert "X-Sink-Envelope-To: rcpt@example.com" in text and "Subject: Hi" in text
    assert eventually(lambda: fixture_stack.request("GET", "/messages/m1").json().get("status") == "sent")
    # INSERT and MODIFY of the message pass the reporter's filter; its own counter items do not.
    assert eventually(lambda: fixture_stack.request("GET", "/counters").json()["reports"] >= 2)
    time.sleep(0.5)
    assert fixture_stack.request("GET", "/counters").json()["reports"] == 2


def test_schedule_ticks(fixture_stack: RunningStack) -> None:
    assert eventually(lambda: fixture_stack.request("GET", "/counters").json()["ticks"] >= 2)


def test_admin_token_and_key_are_kept_in_the_state_dir(fixture_stack: RunningStack) -> None:
    assert (fixture_stack.state_dir / "encryption_key").is_file()
    assert "READY api=" in fixture_stack.log_text()
    assert "Data lives in memory only" in fixture_stack.log_text()


def test_in_process_stack_serves_ticks_on_request_and_restores_the_environment(tmp_path: Path) -> None:
    from local.stack import LocalStack, StackOptions

    before = dict(os.environ)
    options = StackOptions(template=FIXTURE, port=0, smtp_port=0, state_dir=tmp_path, api_token="in-process")
    stack = LocalStack(options)
    stack.start()
    try:
        assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(stack.api_url + "/health", timeout=10) as response:  # noqa: S310
            assert json.loads(response.read()) == {"status": "ok"}
        ticker = stack.tickers["SchedulerFunction.EveryMinute"]
        stack.tick_now("SchedulerFunction")
        assert eventually(lambda: ticker.ticks >= 1, timeout=10)
        # each function sees its own template variables, never another function's
        names = ("POWERTOOLS_SERVICE_NAME", "MAX_BODY_BYTES", "SEND_QUEUE_HIGH_URL", "TABLE_NAME")
        seen = {}
        for logical_id in ("ApiFunction", "SenderFunction"):
            with stack.functions[logical_id].scope():
                seen[logical_id] = {name: os.environ.get(name) for name in names}
        assert seen["ApiFunction"]["POWERTOOLS_SERVICE_NAME"] == "api"
        assert seen["ApiFunction"]["MAX_BODY_BYTES"] == "1048576" and seen["ApiFunction"]["SEND_QUEUE_HIGH_URL"]
        assert seen["SenderFunction"]["POWERTOOLS_SERVICE_NAME"] == "sender"
        sender = seen["SenderFunction"]
        assert sender["MAX_BODY_BYTES"] is None and sender["SEND_QUEUE_HIGH_URL"] is None
        assert seen["SenderFunction"]["TABLE_NAME"] == seen["ApiFunction"]["TABLE_NAME"] == "local-MailTable"
        assert "MAX_BODY_BYTES" not in os.environ and "TABLE_NAME" not in os.environ  # not the process's
    finally:
        stack.stop()
    assert dict(os.environ) == before
