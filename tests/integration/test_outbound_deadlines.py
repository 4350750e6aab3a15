"""Every outbound connection (SMTP, IMAP, report POST, attachment fetch) ends by its total deadline.

The servers here trickle one byte every 0.4 s, so a per-operation timeout (5 s) never fires: only the total
deadline can stop the client. Each test gives a 1.5 s deadline (or a 1 s timeout and no deadline) and checks
the call ended in time with a temporary failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.outbound_http import OutboundFailed, post
from mail_proxy.mail.imap_mailbox import ImapMailbox, MailboxSettings, MailboxUnavailable
from mail_proxy.mail.smtp_client import SmtpConnection
from mail_proxy.mail.smtp_pool import ConnectionCache
from mail_proxy.mail.smtp_replies import SmtpTemporaryError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import AddressPolicy
from mail_proxy.usecases.attachments import AttachmentFetcher, AttachmentTemporaryError, TenantSources
from mail_proxy.usecases.reporting import IO_MARGIN_MS, RetryLater
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.trickle_server import TrickleServer

pytestmark = pytest.mark.timeout(30)

LOOPBACK = AddressPolicy(allow_loopback=True)
BUDGET = 1.5
MESSAGE = b"From: shop@example.com\r\nTo: jo@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


def ends_in_time(call: Callable[[], Any], expected: type[BaseException], budget: float = BUDGET) -> BaseException:
    """Runs ``call``; it must raise ``expected`` after about ``budget`` seconds (never much later)."""
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        call()
    elapsed = time.monotonic() - started
    assert budget - 0.2 <= elapsed <= budget + 1.0, f"ended after {elapsed:.2f} s, budget {budget} s"
    return caught.value


def smtp_settings(server: TrickleServer, **fields: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": server.host, "port": server.port, "tls": "none", "timeout": 5.0,
                              "local_hostname": "client.example.com", "address_policy": LOOPBACK}
    values.update(fields)
    return SmtpSettings(**values)


@pytest.fixture
def trickling_greeting() -> Iterator[TrickleServer]:
    with TrickleServer(trickle=b"220 a very slow hello") as server:
        yield server


def test_smtp_server_trickling_its_greeting_is_left_at_the_deadline(trickling_greeting: TrickleServer) -> None:
    connection = SmtpConnection(smtp_settings(trickling_greeting))
    error = ends_in_time(lambda: connection.open(deadline=time.monotonic() + BUDGET), SmtpTemporaryError)
    assert "timed out" in str(error)
    assert not connection.is_open


def test_smtp_timeout_bounds_a_whole_call_when_no_deadline_is_given(trickling_greeting: TrickleServer) -> None:
    connection = SmtpConnection(smtp_settings(trickling_greeting, timeout=1.0))
    ends_in_time(connection.open, SmtpTemporaryError, budget=1.0)


def test_smtp_server_trickling_a_reply_mid_transaction_is_left_at_the_deadline() -> None:
    with TrickleServer(greet=b"220 ready\r\n", lines=[b"250 hello\r\n"], trickle=b"250 2.1.0 sender ok") as server:
        cache = ConnectionCache()
        connection = cache.get(smtp_settings(server), deadline=time.monotonic() + BUDGET)
        error = ends_in_time(lambda: connection.send("shop@example.com", ["jo@example.com"], MESSAGE,
                                                     deadline=time.monotonic() + BUDGET), SmtpTemporaryError)
        assert "timed out" in str(error)
        cache.close_all()


def test_smtp_tls_handshake_that_trickles_is_left_at_the_deadline() -> None:
    # a TLS record header announcing 16 KB, then one byte at a time: the handshake alone would take hours
    with TrickleServer(trickle=b"\x16\x03\x03\x40\x00" + b"\x02" * 64) as server:
        connection = SmtpConnection(smtp_settings(server, tls="ssl"))
        ends_in_time(lambda: connection.open(deadline=time.monotonic() + BUDGET), SmtpTemporaryError)


def imap_settings(server: TrickleServer) -> MailboxSettings:
    return MailboxSettings(host=server.host, port=server.port, user="bounces", password="imap-secret", tls="none",
                           timeout=5.0, address_policy=LOOPBACK)


def test_imap_server_trickling_its_greeting_is_left_at_the_deadline() -> None:
    with TrickleServer(trickle=b"* OK a very slow hello") as server:
        box = ImapMailbox(imap_settings(server), deadline=time.monotonic() + BUDGET)
        error = ends_in_time(box.__enter__, MailboxUnavailable)
        assert "imap-secret" not in str(error)


def test_imap_session_that_trickles_after_the_greeting_is_left_at_the_deadline() -> None:
    with TrickleServer(greet=b"* OK ready\r\n", trickle=b"* CAPABILITY IMAP4rev1 IMAP4rev1") as server:
        box = ImapMailbox(imap_settings(server), deadline=time.monotonic() + BUDGET)
        ends_in_time(box.__enter__, MailboxUnavailable)


@pytest.fixture
def trickling_http() -> Iterator[TrickleServer]:
    with TrickleServer(greet=b"HTTP/1.1 200 OK\r\n", trickle=b"X-Slow: still coming") as server:
        yield server


def test_report_endpoint_trickling_its_answer_is_left_at_the_deadline(trickling_http: TrickleServer) -> None:
    url = f"http://127.0.0.1:{trickling_http.port}/sync"
    ends_in_time(lambda: post(url, b"{}", {}, allow_loopback=True, timeout=5.0,
                              deadline=time.monotonic() + BUDGET), OutboundFailed)


def test_http_timeout_bounds_a_whole_call_when_no_deadline_is_given(trickling_http: TrickleServer) -> None:
    url = f"http://127.0.0.1:{trickling_http.port}/sync"
    ends_in_time(lambda: post(url, b"{}", {}, allow_loopback=True, timeout=1.0), OutboundFailed, budget=1.0)


def test_attachment_url_trickling_its_answer_fails_the_fetch_temporarily_at_the_deadline(
        trickling_http: TrickleServer) -> None:
    fetcher = AttachmentFetcher(BlobStore(None), allow_loopback=True)
    sources = TenantSources(tenant_id="acme", endpoint_url=None, auth_headers={})
    spec = {"filename": "a.pdf", "storage_path": f"http://127.0.0.1:{trickling_http.port}/a.pdf"}
    ends_in_time(lambda: fetcher.fetch_all(sources, [spec], deadline=time.monotonic() + BUDGET),
                 AttachmentTemporaryError)


# ------------------------------------------------------------------------------------- through the functions


def test_a_trickling_smtp_server_defers_its_message_when_the_smtp_timeout_is_over(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "1")
    reset_caches()
    api = ApiClient()
    harness = DeliveryHarness(stack)
    with TrickleServer(trickle=b"220 a very slow hello") as server:
        token = api.create_tenant("acme")
        api.create_account(token, host="127.0.0.1", port=server.port, tls="none", user=None, password=None)
        assert api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]}).status == 200
        started = time.monotonic()
        harness.drain()
        assert time.monotonic() - started < 4
        rec = api.get("/messages/m1", token=token).json
        assert rec["status"] == "deferred" and "timed out" in rec["history"][-1]["description"]
    harness.close()


def test_a_trickling_report_endpoint_is_left_before_the_reporter_runs_out_of_time(stack: Stack) -> None:
    api = ApiClient()
    harness = DeliveryHarness(stack)
    with TrickleServer(greet=b"HTTP/1.1 200 OK\r\n", trickle=b"X-Slow: still coming") as server:
        assert api.post("/tenant", token=ADMIN_TOKEN, body={
            "tenant_id": "acme", "client_base_url": f"http://127.0.0.1:{server.port}"}).status == 201
        delivery, _queue = harness.reporter_module.wiring()
        record = {"tenant_id": "acme", "events": []}
        later = ends_in_time(
            lambda: delivery.deliver(record, record_id="r1", remaining_ms=lambda: IO_MARGIN_MS + 1_500), RetryLater)
        assert "report call failed" in str(later)
    harness.close()
