"""Fixtures of the genro-mail-proxy compatibility tests: upstream's virtualenv, the API on loopback, delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local.gateway import HttpApiGateway
from local.template import load_template
from mail_proxy.domain import clock
from tests.compat.upstream import Upstream, ensure_upstream
from tests.conftest import Stack, load_function_module, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer


@pytest.fixture(scope="session")
def upstream() -> Upstream:
    return ensure_upstream()


@pytest.fixture
def server(stack: Stack) -> Iterator[str]:
    gateway = HttpApiGateway(api=load_function_module("api").lambda_handler,
                             authorizer=load_function_module("authorizer").lambda_handler,
                             routes=load_template().http_routes("ApiFunction"), port=0, auth_cache_seconds=0)
    gateway.start()
    try:
        yield gateway.url
    finally:
        gateway.stop()


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    with ScriptedSmtpServer(tls="starttls", auth=True) as sink:
        yield sink


@pytest.fixture
def delivery(stack: Stack, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    assert smtp.ca_file is not None
    monkeypatch.setenv("MAIL_PROXY_SMTP_CA_FILE", smtp.ca_file)
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)  # rate-limit windows cannot roll over during the test
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()
