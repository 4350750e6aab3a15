"""Tenant-supplied SMTP, IMAP and HTTP hosts go through one address guard: refused before any packet is
sent (with one plain text that says nothing about what is there), connected to at the checked address,
TLS checked against the name; an administrator's relay networks are allowed; literal hosts answer 422."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.adapters.outbound_http import OutboundRefused, post
from mail_proxy.mail.imap_mailbox import ImapMailbox, MailboxSettings, MailboxUnavailable
from mail_proxy.mail.smtp_client import SmtpConnection
from mail_proxy.mail.smtp_replies import SmtpPermanentError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import NOT_ALLOWED, AddressPolicy, parse_networks
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer

pytestmark = pytest.mark.timeout(60)

# what issue 11 lists, and the other spellings of the same places
SMTP_HOSTS = ["169.254.169.254", "10.0.0.5", "[::1]", "2130706433", "0x7f.1", "2002:7f00:1::1", "64:ff9b::a00:5",
              "[::ffff:10.0.0.5]", "0177.0.0.1", "100.64.0.1", "fd00:ec2::254", "localhost"]
MESSAGE = b"From: shop@example.com\r\nTo: jo@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.mark.parametrize("host", SMTP_HOSTS)
def test_smtp_account_host_in_a_private_or_reserved_range_is_refused_at_connect(host: str) -> None:
    settings = SmtpSettings(host=host, port=587, local_hostname="client.example.com")
    with pytest.raises(SmtpPermanentError) as caught:
        SmtpConnection(settings).open()
    assert caught.value.reason == NOT_ALLOWED


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "localhost"])
def test_a_refused_host_is_never_contacted_and_the_error_tells_nothing_of_it(host: str) -> None:
    with ScriptedSmtpServer() as server:
        settings = SmtpSettings(host=host, port=server.port, tls="none", local_hostname="client.example.com")
        with pytest.raises(SmtpPermanentError) as caught:
            SmtpConnection(settings).open()
        assert caught.value.reason == NOT_ALLOWED
        assert server.connections_opened == 0


def test_an_allow_listed_relay_network_is_connected_to() -> None:
    policy = AddressPolicy(allowed_networks=parse_networks("127.0.0.0/8"))  # loopback itself stays off
    with ScriptedSmtpServer() as server:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, tls="none", address_policy=policy,
                                local_hostname="client.example.com")
        with SmtpConnection(settings) as connection:
            connection.send("shop@example.com", ["jo@example.com"], MESSAGE)
        assert server.wait_for_messages(1)[0].rcpt_tos == ("jo@example.com",)


def resolving_to_loopback(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """``name`` resolves to 127.0.0.1 (and only through this fake: the count shows how often it was asked)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_tls_is_checked_against_the_name_while_the_checked_address_is_connected_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked = resolving_to_loopback(monkeypatch, "relay.example.test")
    loopback = AddressPolicy(allow_loopback=True)
    with ScriptedSmtpServer(tls="starttls") as server:  # certificate for localhost and 127.0.0.1 only
        assert server.ca_file is not None
        trusted = SmtpSettings(host="localhost", port=server.port, tls="starttls", ca_file=server.ca_file,
                               address_policy=loopback, local_hostname="client.example.com")
        with SmtpConnection(trusted) as connection:
            connection.send("shop@example.com", ["jo@example.com"], MESSAGE)
        other_name = SmtpSettings(host="relay.example.test", port=server.port, tls="starttls",
                                  ca_file=server.ca_file, address_policy=loopback,
                                  local_hostname="client.example.com")
        with pytest.raises(SmtpPermanentError, match="certificate"):
            SmtpConnection(other_name).open()
    assert asked == ["relay.example.test"]  # resolved once: the connection went to the checked address


@pytest.mark.parametrize("host", ["10.0.0.5", "[::1]", "2130706433", "169.254.169.254", "localhost"])
def test_imap_mailbox_host_in_a_private_or_reserved_range_is_refused_at_connect(host: str) -> None:
    settings = MailboxSettings(host=host, port=993, user="bounces", password="imap-secret")
    with pytest.raises(MailboxUnavailable) as caught, ImapMailbox(settings):
        pass
    assert caught.value.reason == NOT_ALLOWED


@pytest.mark.parametrize("url", ["https://2130706433/sync", "https://0x7f.1/sync", "https://[2002:7f00:1::1]/sync",
                                 "https://[64:ff9b::a00:5]/sync", "https://0177.0.0.1/sync"])
def test_report_url_spelled_as_a_private_number_is_refused_with_the_plain_text(url: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        post(url, b"{}", {}, allow_loopback=False)
    assert str(caught.value) == NOT_ALLOWED


# ------------------------------------------------------------------------------------------------- API


@pytest.fixture
def strict_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    """The API as deployed: loopback not allowed, no relay networks."""
    monkeypatch.setenv("MAIL_PROXY_ALLOW_LOOPBACK", "0")
    reset_caches()
    return ApiClient()


LITERAL_HOSTS = ["169.254.169.254", "10.0.0.5", "[::1]", "2130706433", "0x7f.1", "0177.0.0.1", "[2002:7f00:1::1]",
                 "[64:ff9b::a00:5]", "[::ffff:10.0.0.5]"]


def test_an_account_whose_host_is_a_private_address_is_refused_with_422(strict_api: ApiClient) -> None:
    token = strict_api.create_tenant("acme")
    for host in LITERAL_HOSTS:
        resp = strict_api.post("/account", token=token, body={"id": "smtp1", "host": host, "port": 587})
        assert resp.status == 422, (host, resp.text)
        assert resp.json["detail"][0]["loc"] == ["host"] and resp.json["detail"][0]["msg"] == NOT_ALLOWED
    for unbracketed_ipv6 in ("2002:7f00:1::1", "64:ff9b::a00:5"):  # not a host name: refused as such
        resp = strict_api.post("/account", token=token, body={"id": "smtp1", "host": unbracketed_ipv6, "port": 587})
        assert resp.status == 422, resp.text
    assert strict_api.get("/accounts", token=token).json["accounts"] == []
    assert strict_api.post("/account", token=token,
                           body={"id": "smtp1", "host": "smtp.example.com", "port": 587}).status == 201


@pytest.mark.parametrize("host", ["localhost", "mail.localhost", "LOCALHOST."])
def test_an_account_whose_host_is_a_localhost_name_is_refused_with_422(strict_api: ApiClient, host: str) -> None:
    token = strict_api.create_tenant("acme")
    resp = strict_api.post("/account", token=token, body={"id": "smtp1", "host": host, "port": 587})
    assert resp.status == 422, resp.text
    assert resp.json["detail"][0]["loc"] == ["host"] and resp.json["detail"][0]["msg"] == NOT_ALLOWED


@pytest.mark.parametrize(("host", "msg"), [("[.]", "host: '[.]' is not an IP address in brackets"),
                                           ("a..b", "host must be a host name or an IP address"),
                                           ("-relay", "host must be a host name or an IP address")])
def test_an_account_host_no_resolver_could_read_is_refused_with_422(api: ApiClient, host: str, msg: str) -> None:
    token = api.create_tenant("acme")
    resp = api.post("/account", token=token, body={"id": "smtp1", "host": host, "port": 587})
    assert resp.status == 422 and resp.json["detail"][0]["loc"] == ["host"] and resp.json["detail"][0]["msg"] == msg


def test_an_account_in_an_allow_listed_relay_network_is_accepted(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_ALLOW_LOOPBACK", "0")
    monkeypatch.setenv("MAIL_PROXY_ALLOWED_RELAY_NETWORKS", "10.0.0.0/16")
    reset_caches()
    api = ApiClient()
    token = api.create_tenant("acme")
    assert api.post("/account", token=token, body={"id": "relay", "host": "10.0.0.5", "port": 587}).status == 201
    resp = api.post("/account", token=token, body={"id": "other", "host": "10.1.0.5", "port": 587})
    assert resp.status == 422 and resp.json["detail"][0]["msg"] == NOT_ALLOWED


def test_a_pec_mailbox_or_bounce_mailbox_at_a_private_address_is_refused_with_422(strict_api: ApiClient) -> None:
    token = strict_api.create_tenant("acme")
    pec = {"id": "pec1", "host": "smtp.example.com", "port": 465, "is_pec": True, "imap_host": "0x7f.1"}
    resp = strict_api.post("/account", token=token, body=pec)
    assert resp.status == 422 and resp.json["detail"][0]["loc"] == ["imap_host"]
    bounce = {"host": "169.254.169.254", "user": "bounces", "password": "imap-secret"}
    resp = strict_api.put("/tenant/acme", token=ADMIN_TOKEN, body={"bounce_imap": bounce})
    assert resp.status == 422 and resp.json["detail"][0]["loc"] == ["bounce_imap", "host"]
    resp = strict_api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "beta", "bounce_imap": bounce})
    assert resp.status == 422


# ------------------------------------------------------------------------------------------- delivery


@pytest.fixture
def strict_delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("MAIL_PROXY_ALLOW_LOOPBACK", "0")
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def test_a_message_for_an_account_whose_name_resolves_to_loopback_fails_with_the_plain_text(
        strict_api: ApiClient, strict_delivery: DeliveryHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to_loopback(monkeypatch, "relay.example.test")
    with ScriptedSmtpServer() as server:
        token = strict_api.create_tenant("acme")
        strict_api.create_account(token, host="relay.example.test", port=server.port, tls="none", user=None,
                                  password=None)
        resp = strict_api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]})
        assert resp.status == 200, resp.text
        strict_delivery.drain()
        rec = strict_api.get("/messages/m1", token=token).json
        assert rec["status"] == "error" and rec["error"] == NOT_ALLOWED
        assert rec["history"][-1]["description"] == NOT_ALLOWED
        assert server.connections_opened == 0 and not server.messages
