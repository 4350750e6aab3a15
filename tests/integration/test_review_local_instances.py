"""Concurrent local instances of one function are separate containers down to what the wiring builds."""

from __future__ import annotations

import inspect

import pytest

from local.lambdas import load_function
from local.template import load_template


@pytest.fixture
def sender_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return {"TABLE_NAME": "mail-proxy-local", "SEND_QUEUE_HIGH_URL": "http://127.0.0.1:1/high"}


def test_two_instances_of_the_sender_share_neither_connections_nor_dispatcher(
        sender_environment: dict[str, str]) -> None:
    template = load_template()
    spec = template.function_spec("SenderFunction")
    first = load_function(spec, "local-Sender", template=template, environment=sender_environment)
    second = load_function(spec, "local-Sender", template=template, environment=sender_environment, instance=1,
                           init_lock=first._init_lock)
    one, two = (inspect.unwrap(f.handler).__globals__ for f in (first, second))
    assert one["connections"] is not two["connections"]  # an SMTP connection is never used by two at once
    with first._scope.active():
        dispatcher_one = one["dispatcher"]()
    with second._scope.active():
        dispatcher_two = two["dispatcher"]()
    assert dispatcher_one is not dispatcher_two  # new_invocation of one never clears the other's state
    assert dispatcher_one.connections is one["connections"] and dispatcher_two.connections is two["connections"]
