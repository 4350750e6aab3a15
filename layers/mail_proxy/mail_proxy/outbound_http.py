"""Outbound HTTP to tenants' applications, guarded.

A tenant chooses the URL, so the proxy must not become a way into the network it runs in: the host is
resolved once, every address is checked (private, loopback, link-local such as 169.254.169.254, multicast
and reserved ranges are refused; loopback only when the local stack allows it), and the connection goes
to the checked address, so a DNS answer cannot change between the check and the connection. HTTPS is
required except on loopback. Timeouts and a response size cap bound every call; redirects are not followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024


class OutboundRefused(Exception):
    """The URL may never be called (bad scheme, private address): retrying will not help."""


class OutboundFailed(Exception):
    """The call did not complete (DNS, connection, timeout, TLS): it may work later."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    truncated: bool = False


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        if allow_loopback:
            return
        raise OutboundRefused(f"address {ip} is loopback")
    if ip.is_link_local:
        raise OutboundRefused(f"address {ip} is link-local (instance metadata lives there)")
    if ip.is_private or ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        raise OutboundRefused(f"address {ip} is not a public address")


def resolve_checked(host: str, port: int, *, allow_loopback: bool) -> str:
    """One public address of ``host``; refuses if any address it resolves to is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundFailed(f"cannot resolve {host}: {exc}") from exc
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        check_address(ip, allow_loopback=allow_loopback)
        addresses.append(str(ip))
    if not addresses:
        raise OutboundFailed(f"{host} has no address")
    return addresses[0]


def check_url(url: str, *, allow_loopback: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, without resolving it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise OutboundRefused("only https URLs are called")
    if not parts.hostname:
        raise OutboundRefused("URL has no host")
    if parts.username or parts.password:
        raise OutboundRefused("credentials in the URL are not allowed; use client_auth")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "http" and not allow_loopback:
        raise OutboundRefused("only https URLs are called")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip = ip
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_loopback: bool,
         timeout: float = DEFAULT_TIMEOUT, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> HttpAnswer:
    return request("POST", url, body, headers, allow_loopback=allow_loopback, timeout=timeout,
                   max_response_bytes=max_response_bytes)


def request(method: str, url: str, body: bytes | None, headers: Mapping[str, str], *, allow_loopback: bool,
            timeout: float = DEFAULT_TIMEOUT, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> HttpAnswer:
    scheme, host, port, path = check_url(url, allow_loopback=allow_loopback)
    ip = resolve_checked(host, port, allow_loopback=allow_loopback)
    if scheme == "http" and not ipaddress.ip_address(ip).is_loopback:
        raise OutboundRefused("plain http is only allowed to loopback")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = _PinnedHTTPSConnection(host, ip, port, timeout, _tls_context())
    else:
        connection = _PinnedHTTPConnection(host, ip, port, timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        data = response.read(max_response_bytes + 1)
        return HttpAnswer(response.status, data[:max_response_bytes], len(data) > max_response_bytes)
    except (OSError, http.client.HTTPException) as exc:
        raise OutboundFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
