"""Fixtures shared by the delivery guarantee tests: a sender that never sleeps for real, and a tenant whose
account points at the plain SMTP sink (modules that need TLS or AUTH define their own); and, for the returned
mail tests, a bounce mailbox on a real IMAP server with the sender and the bounce poller
(``tests/fixtures/bounce_poller.py``; a module with another mailbox defines its own ``imap``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mail_proxy.domain import clock
from tests.conftest import ApiClient, Stack, reset_caches
from tests.fixtures.bounce_poller import harness, imap, poller  # noqa: F401  (returned-mail fixtures)
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer


@pytest.fixture
def delivery(stack: Stack, smtp: ScriptedSmtpServer) -> Iterator[DeliveryHarness]:
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)  # start of a minute: rate windows cannot roll over
    sender = DeliveryHarness(stack)
    sender.sender_module.dispatcher().sleep = lambda _s: None
    yield sender
    sender.close()


@pytest.fixture
def tenant(api: ApiClient, smtp: ScriptedSmtpServer) -> str:
    token = api.create_tenant("acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token
