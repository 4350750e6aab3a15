"""The address guard's rules, without a network: which addresses are refused, how numbers are read."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import pytest

from mail_proxy.errors import ConfigurationError
from mail_proxy.security.address_guard import (
    NOT_ALLOWED,
    AddressPolicy,
    HostNotAllowed,
    literal_address,
    parse_networks,
    resolve,
)
from mail_proxy.settings import Settings

REFUSED_HOSTS = [
    "169.254.169.254", "10.0.0.5", "[::1]", "::1", "2130706433", "0x7f.1", "2002:7f00:1::1", "[2002:7f00:1::1]",
    "64:ff9b::a00:5", "64:ff9b:1::a00:5", "0177.0.0.1", "127.1", "0x7f000001", "100.64.0.1", "192.168.1.1",
    "172.16.0.1", "0.0.0.0", "::", "::ffff:10.0.0.5", "[::ffff:127.0.0.1]", "::10.0.0.5", "fd00:ec2::254",  # noqa: S104
    "fe80::1", "fc00::1", "224.0.0.1", "255.255.255.255", "240.0.0.1", "2001:0:4136:e378::1", "198.18.0.1",
]


def soon() -> float:
    return time.monotonic() + 5


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_private_reserved_and_embedded_addresses_are_refused_with_the_plain_text(host: str) -> None:
    with pytest.raises(HostNotAllowed) as caught:
        resolve(host, 587, AddressPolicy(), soon())
    assert str(caught.value) == NOT_ALLOWED


@pytest.mark.parametrize("host", ["93.184.216.34", "[2a00:1450:4001:81b::200e]", "8.8.8.8", "::ffff:8.8.8.8"])
def test_public_addresses_pass(host: str) -> None:
    assert resolve(host, 587, AddressPolicy(), soon())


@pytest.mark.parametrize(("spelled", "address"), [
    ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("10.5", "10.0.0.5"), ("10.0.5", "10.0.0.5"), ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
    ("[::1]", "::1"), ("64:ff9b::a00:5", "64:ff9b::a00:5"),
])
def test_numeric_spellings_are_read_as_the_c_library_reads_them(spelled: str, address: str) -> None:
    assert literal_address(spelled) == ipaddress.ip_address(address)


@pytest.mark.parametrize("name", ["smtp.example.com", "256.1.1.1", "1.2.3.4.5", "0x100.1", "08.1.1.1", "a.0x7f"])
def test_names_and_impossible_numbers_are_not_addresses(name: str) -> None:
    assert literal_address(name) is None


def test_loopback_is_allowed_only_when_the_local_stack_allows_it() -> None:
    assert resolve("127.0.0.1", 25, AddressPolicy(allow_loopback=True), soon())
    assert resolve("[::1]", 25, AddressPolicy(allow_loopback=True), soon())
    with pytest.raises(HostNotAllowed):
        resolve("127.0.0.1", 25, AddressPolicy(), soon())
    with pytest.raises(HostNotAllowed):  # loopback does not open private networks
        resolve("10.0.0.5", 25, AddressPolicy(allow_loopback=True), soon())


def test_an_allow_listed_relay_network_is_accepted_and_nothing_else() -> None:
    policy = AddressPolicy(allowed_networks=parse_networks("10.20.0.0/16, fd12::/16"))
    assert resolve("10.20.3.4", 587, policy, soon())
    assert resolve("::ffff:10.20.3.4", 587, policy, soon())
    assert resolve("fd12::25", 587, policy, soon())
    for other in ("10.21.0.1", "127.0.0.1", "192.168.0.1"):
        with pytest.raises(HostNotAllowed):
            resolve(other, 587, policy, soon())


def test_metadata_addresses_are_refused_even_when_allow_listed() -> None:
    policy = AddressPolicy(allow_loopback=True, allowed_networks=parse_networks("169.254.0.0/16 fd00::/8"))
    assert resolve("169.254.10.10", 587, policy, soon())
    for metadata in ("169.254.169.254", "fd00:ec2::254", "[::ffff:169.254.169.254]"):
        with pytest.raises(HostNotAllowed):
            resolve(metadata, 587, policy, soon())


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_is_refused_when_any_of_its_addresses_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"relay.example.com": ["93.184.216.34", "10.0.0.5"],
                           "six.example.com": ["2002:a00:5::1"]})
    for name in ("relay.example.com", "six.example.com"):
        with pytest.raises(HostNotAllowed):
            resolve(name, 587, AddressPolicy(), soon())


def test_a_name_with_public_addresses_resolves_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"smtp.example.com": ["93.184.216.34"]})
    assert resolve("smtp.example.com", 587, AddressPolicy(), soon()) == [ipaddress.ip_address("93.184.216.34")]
    assert asked == ["smtp.example.com"]


def test_check_literal_lets_names_through_for_the_connect_time_check() -> None:
    AddressPolicy().check_literal("smtp.example.com")
    with pytest.raises(HostNotAllowed):
        AddressPolicy().check_literal("0x7f.1")


def test_relay_networks_come_from_the_environment_and_a_typo_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.setenv("MAIL_PROXY_ALLOWED_RELAY_NETWORKS", "10.20.0.0/16,192.168.7.0/24")
    policy = Settings.from_env().relay_address_policy()
    assert policy.permits(ipaddress.ip_address("192.168.7.9")) and not policy.allow_loopback
    monkeypatch.setenv("MAIL_PROXY_ALLOWED_RELAY_NETWORKS", "10.20.0.1/16")
    with pytest.raises(ConfigurationError, match="MAIL_PROXY_ALLOWED_RELAY_NETWORKS"):
        Settings.from_env()
