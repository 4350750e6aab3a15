"""The SMTP client against a real SMTP server on 127.0.0.1: TLS modes, login, how every kind of failure
is classified, and connection reuse."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.mail.smtp_client import SmtpConnection
from mail_proxy.mail.smtp_pool import ConnectionCache
from mail_proxy.mail.smtp_replies import (
    SmtpDeliveryError,
    SmtpPermanentError,
    SmtpTemporaryError,
    classify_smtp_failure,
)
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import AddressPolicy
from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer

pytestmark = pytest.mark.timeout(30)

LOOPBACK_ALLOWED = AddressPolicy(allow_loopback=True)  # the test servers listen on 127.0.0.1
MESSAGE = b"From: shop@example.com\r\nTo: jo@example.com\r\nSubject: Hi\r\n\r\nHello Jo\r\n"


def settings_for(server: ScriptedSmtpServer, **overrides: Any) -> SmtpSettings:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "tls": server.tls,
        "user": SMTP_USER if server.auth else None,
        "password": SMTP_PASSWORD if server.auth else None,
        "ca_file": server.ca_file,
        "timeout": 5.0,
        "address_policy": LOOPBACK_ALLOWED,
    }
    fields.update(overrides)
    return SmtpSettings(**fields)


@pytest.fixture
def server() -> Iterator[ScriptedSmtpServer]:
    """STARTTLS required, AUTH required: the usual submission server (port 587)."""
    with ScriptedSmtpServer(tls="starttls", auth=True) as running:
        yield running


@pytest.fixture
def connection(server: ScriptedSmtpServer) -> Iterator[SmtpConnection]:
    with SmtpConnection(settings_for(server)) as opened:
        yield opened


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- delivery ---------------------------------------------------------------------------------------


def test_starttls_with_auth_delivers_the_exact_envelope_and_bytes(
    server: ScriptedSmtpServer, connection: SmtpConnection
) -> None:
    outcome = connection.send("bounces@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos, received.data) == (
        "bounces@example.com",
        ("jo@example.com", "ann@example.com"),
        MESSAGE,
    )
    assert received.tls and received.auth_user == SMTP_USER
    assert outcome.accepted == ("jo@example.com", "ann@example.com")
    assert outcome.refused == {}
    assert (outcome.code, outcome.reply) == (250, "2.0.0 OK: queued as M1")


def test_implicit_tls_delivers() -> None:
    with ScriptedSmtpServer(tls="ssl", auth=True) as server, SmtpConnection(settings_for(server)) as connection:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

        [received] = server.messages
        assert received.tls and received.auth_user == SMTP_USER and received.data == MESSAGE


def test_plain_connection_without_credentials_delivers() -> None:
    with ScriptedSmtpServer(tls="none") as server, SmtpConnection(settings_for(server)) as connection:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

        assert server.messages[0].data == MESSAGE
        assert not server.messages[0].tls


def test_pipelining_server_gets_the_same_envelope_and_bytes() -> None:
    with (
        ScriptedSmtpServer(tls="starttls", auth=True, pipelining=True) as server,
        SmtpConnection(settings_for(server)) as connection,
    ):
        assert connection.pipelining
        connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

        [received] = server.messages
        assert (received.rcpt_tos, received.data) == (("jo@example.com", "ann@example.com"), MESSAGE)


def test_lines_starting_with_a_dot_arrive_intact(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    data = b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nend\r\n"

    connection.send("shop@example.com", ["jo@example.com"], data)

    assert server.messages[0].data == data


def test_max_size_comes_from_the_server_size_extension() -> None:
    with ScriptedSmtpServer(data_size_limit=1234) as limited, SmtpConnection(settings_for(limited)) as connection:
        assert connection.max_size == 1234
    with ScriptedSmtpServer(data_size_limit=None) as unlimited, SmtpConnection(settings_for(unlimited)) as connection:
        assert connection.max_size is None


# --- permanent failures -----------------------------------------------------------------------------


def test_wrong_password_is_permanent_with_code_535(server: ScriptedSmtpServer) -> None:
    with pytest.raises(SmtpPermanentError) as caught:
        SmtpConnection(settings_for(server, password="wrong")).open()

    assert caught.value.code == 535
    assert caught.value.reason.startswith("authentication failed: 535")
    assert "wrong" not in caught.value.reason


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_certificate_not_trusted_is_permanent(tls: str) -> None:
    with ScriptedSmtpServer(tls=tls, auth=True) as server:  # type: ignore[arg-type]
        with pytest.raises(SmtpPermanentError, match="certificate") as caught:
            SmtpConnection(settings_for(server, ca_file=None, verify_tls=True)).open()

        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_starttls_mode_against_a_server_without_starttls_is_permanent() -> None:
    with ScriptedSmtpServer(tls="none") as server, pytest.raises(SmtpPermanentError, match="STARTTLS"):
        SmtpConnection(settings_for(server, tls="starttls")).open()


def test_550_on_data_is_permanent_with_the_reply_text(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.reply("DATA", "550 5.7.1 message content rejected")

    with pytest.raises(SmtpPermanentError) as caught:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert (caught.value.code, caught.value.reply) == (550, "5.7.1 message content rejected")
    assert caught.value.reason == "550 5.7.1 message content rejected"
    assert server.messages == []


def test_550_on_mail_from_is_permanent(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.reply("MAIL", "550 5.7.1 sender not allowed")

    with pytest.raises(SmtpPermanentError) as caught:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert caught.value.code == 550


def test_every_recipient_refused_with_553_is_permanent(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.refuse("jo@example.com", "553 5.1.3 bad address")
    server.script.refuse("ann@example.com", "553 5.1.3 bad address")

    with pytest.raises(SmtpPermanentError) as caught:
        connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

    assert caught.value.code == 553
    assert caught.value.refused == {
        "jo@example.com": (553, "5.1.3 bad address"),
        "ann@example.com": (553, "5.1.3 bad address"),
    }
    assert server.messages == []


def test_message_over_the_advertised_size_is_permanent_and_never_sent() -> None:
    with ScriptedSmtpServer(data_size_limit=1000) as server, SmtpConnection(settings_for(server)) as connection:
        with pytest.raises(SmtpPermanentError, match="too large"):
            connection.send("shop@example.com", ["jo@example.com"], b"x" * 1001)

        assert server.messages == []


def test_envelope_address_that_could_inject_commands_is_permanent(connection: SmtpConnection) -> None:
    with pytest.raises(SmtpPermanentError, match="malformed envelope"):
        connection.send("shop@example.com", ["jo@example.com>\r\nRCPT TO:<eve@example.com"], MESSAGE)


# --- temporary failures -----------------------------------------------------------------------------


def test_451_on_data_is_temporary_with_code_451(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.reply("DATA", "451 4.3.0 try later")

    with pytest.raises(SmtpTemporaryError) as caught:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert (caught.value.code, caught.value.reason) == (451, "451 4.3.0 try later")


def test_421_is_temporary_and_the_connection_is_closed(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.reply("MAIL", "421 4.7.0 too busy, closing", close_after=True)

    with pytest.raises(SmtpTemporaryError) as caught:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert caught.value.code == 421
    assert not connection.is_open


def test_every_recipient_refused_with_4xx_is_temporary(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.refuse("jo@example.com", "450 4.2.1 mailbox busy")
    server.script.refuse("ann@example.com", "550 5.1.1 user unknown")

    with pytest.raises(SmtpTemporaryError) as caught:
        connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

    assert set(caught.value.refused) == {"jo@example.com", "ann@example.com"}


def test_connection_dropped_mid_data_is_temporary(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    server.script.drop("DATA")

    with pytest.raises(SmtpTemporaryError, match="connection closed"):
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert server.messages == []
    assert not connection.is_open


def test_server_not_listening_is_temporary() -> None:
    settings = SmtpSettings("127.0.0.1", free_port(), tls="none", timeout=2.0, address_policy=LOOPBACK_ALLOWED)

    with pytest.raises(SmtpTemporaryError, match="refused"):
        SmtpConnection(settings).open()


def test_reply_slower_than_the_timeout_is_temporary(server: ScriptedSmtpServer) -> None:
    server.script.reply("DATA", "250 2.0.0 too late", delay=1.5)

    with SmtpConnection(settings_for(server, timeout=0.3)) as connection, pytest.raises(SmtpTemporaryError) as caught:
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    assert "timed out" in caught.value.reason


# --- partial success and reuse ----------------------------------------------------------------------


def test_one_of_two_recipients_refused_is_sent_with_the_refusal_recorded(
    server: ScriptedSmtpServer, connection: SmtpConnection
) -> None:
    server.script.refuse("ann@example.com", "550 5.1.1 user unknown")

    outcome = connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

    assert outcome.accepted == ("jo@example.com",)
    assert outcome.refused == {"ann@example.com": (550, "5.1.1 user unknown")}
    assert server.messages[0].rcpt_tos == ("jo@example.com",)


def test_connection_stays_usable_after_a_refused_message(
    server: ScriptedSmtpServer, connection: SmtpConnection
) -> None:
    server.script.reply("DATA", "550 5.7.1 rejected")
    with pytest.raises(SmtpPermanentError):
        connection.send("shop@example.com", ["jo@example.com"], MESSAGE)

    connection.send("shop@example.com", ["ann@example.com"], MESSAGE)

    assert [m.rcpt_tos for m in server.messages] == [("ann@example.com",)]
    assert server.connections_opened == 1


def test_pipelined_refusals_keep_the_session_in_step() -> None:
    with (
        ScriptedSmtpServer(tls="none", pipelining=True) as server,
        SmtpConnection(settings_for(server)) as connection,
    ):
        server.script.reply("MAIL", "550 5.7.1 sender refused")
        with pytest.raises(SmtpPermanentError, match="sender refused"):
            connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)
        server.script.refuse("ann@example.com", "550 5.1.1 user unknown")
        with pytest.raises(SmtpPermanentError, match="every recipient refused"):
            connection.send("shop@example.com", ["ann@example.com"], MESSAGE)

        outcome = connection.send("shop@example.com", ["jo@example.com", "ann@example.com"], MESSAGE)

        assert outcome.refused == {"ann@example.com": (550, "5.1.1 user unknown")}
        assert [m.rcpt_tos for m in server.messages] == [("jo@example.com",)]
        assert server.connections_opened == 1


def test_is_alive_answers_with_a_noop(server: ScriptedSmtpServer, connection: SmtpConnection) -> None:
    assert connection.is_alive()

    server.script.reply("NOOP", "421 4.4.2 shutting down", close_after=True)

    assert not connection.is_alive()


def test_close_never_raises_after_the_server_closed_the_connection(
    server: ScriptedSmtpServer, connection: SmtpConnection
) -> None:
    server.close_connections()

    connection.close()
    connection.close()

    assert not connection.is_open


# --- the connection cache ---------------------------------------------------------------------------


def test_connection_cache_reuses_one_connection_for_several_sends(server: ScriptedSmtpServer) -> None:
    cache = ConnectionCache()
    try:
        for index in range(5):
            cache.get(settings_for(server)).send("shop@example.com", [f"r{index}@example.com"], MESSAGE)
    finally:
        cache.close_all()

    assert len(server.messages) == 5
    assert server.connections_opened == 1


def test_connection_cache_reconnects_after_the_server_closed_the_connection(server: ScriptedSmtpServer) -> None:
    cache = ConnectionCache()
    try:
        cache.get(settings_for(server)).send("shop@example.com", ["jo@example.com"], MESSAGE)
        server.close_connections(reply="421 4.4.2 idle timeout")

        cache.get(settings_for(server)).send("shop@example.com", ["ann@example.com"], MESSAGE)
    finally:
        cache.close_all()

    assert [m.connection for m in server.messages] == [1, 2]


def test_connection_cache_checks_with_noop_only_after_idle_seconds(server: ScriptedSmtpServer) -> None:
    clock = Clock()
    cache = ConnectionCache(noop_after=5.0, clock=clock)
    server.script.reply("NOOP", "500 5.5.1 no noop for you", times=2)
    try:
        first = cache.get(settings_for(server))
        clock.now += 4.0
        assert cache.get(settings_for(server)) is first  # no NOOP: the scripted failure is still queued
        clock.now += 6.0
        second = cache.get(settings_for(server))  # NOOP answered 500: a fresh connection
    finally:
        cache.close_all()

    assert second is not first
    assert server.connections_opened == 2


def test_connection_cache_reopens_after_max_idle(server: ScriptedSmtpServer) -> None:
    clock = Clock()
    cache = ConnectionCache(max_idle=240.0, clock=clock)
    try:
        first = cache.get(settings_for(server))
        clock.now += 241.0
        second = cache.get(settings_for(server))
    finally:
        cache.close_all()

    assert second is not first and not first.is_open
    assert server.connections_opened == 2


def test_connection_cache_discard_closes_the_connection(server: ScriptedSmtpServer) -> None:
    cache = ConnectionCache()
    connection = cache.get(settings_for(server))

    cache.discard(settings_for(server))

    assert not connection.is_open and len(cache) == 0


def test_connection_cache_opens_a_separate_connection_per_password(server: ScriptedSmtpServer) -> None:
    cache = ConnectionCache()
    try:
        cache.get(settings_for(server))
        with pytest.raises(SmtpPermanentError):
            cache.get(settings_for(server, password="changed"))
    finally:
        cache.close_all()

    assert server.connections_opened == 2


# --- settings and classification --------------------------------------------------------------------


def test_settings_repr_and_fingerprint_never_contain_the_password() -> None:
    settings = SmtpSettings("smtp.example.com", 587, user="u", password="hunter2-secret")

    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in repr(settings.fingerprint)
    assert settings.fingerprint != SmtpSettings("smtp.example.com", 587, user="u", password="other").fingerprint


def test_settings_reject_an_unknown_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls"):
        SmtpSettings("smtp.example.com", 587, tls="tls")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (smtplib.SMTPDataError(452, b"4.3.1 insufficient storage"), SmtpTemporaryError),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 not yours", "a@b.c"), SmtpPermanentError),
        (smtplib.SMTPAuthenticationError(454, b"4.7.0 temporary auth failure"), SmtpTemporaryError),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), SmtpPermanentError),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), SmtpTemporaryError),
        (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported"), SmtpPermanentError),
        (ssl.SSLCertVerificationError("certificate verify failed"), SmtpPermanentError),
        (ssl.SSLEOFError("EOF occurred in violation of protocol"), SmtpTemporaryError),
        (TimeoutError("timed out"), SmtpTemporaryError),
        (ConnectionResetError(104, "Connection reset by peer"), SmtpTemporaryError),
        (socket.gaierror(-3, "Temporary failure in name resolution"), SmtpTemporaryError),
    ],
)
def test_classification_of_smtplib_ssl_and_socket_failures(
    failure: BaseException, expected: type[SmtpDeliveryError]
) -> None:
    assert type(classify_smtp_failure(failure)) is expected
