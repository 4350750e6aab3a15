"""Outbound HTTP to tenants' applications, guarded.

A tenant chooses the URL, so every call goes through :mod:`mail_proxy.security.address_guard`: the host is resolved
once, every address is checked (private, loopback, link-local such as 169.254.169.254, 6to4/NAT64 forms,
multicast and reserved ranges are refused; loopback only when the local stack allows it), and the
connection goes to the checked address, so a DNS answer cannot change between the check and the
connection. HTTPS is required except on loopback. A call ends by its total deadline (the caller's, capped
by ``timeout``), however slowly the server answers; a response size cap bounds it; redirects are not
followed.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from mail_proxy.security.address_guard import (
    AddressPolicy,
    DeadlineTLSContext,
    HostNotAllowed,
    IpAddress,
    connect_to,
    deadline_after,
    resolve,
    tls_client_context,
)

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


def check_url(url: str, *, allow_loopback: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, without resolving it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise OutboundRefused("only https URLs are called")
    if not parts.hostname:
        raise OutboundRefused("URL has no host")
    if parts.username or parts.password:
        raise OutboundRefused("credentials in the URL are not allowed; use client_auth")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise OutboundRefused("URL port is not a number from 1 to 65535") from exc
    if parts.scheme == "http" and not allow_loopback:
        raise OutboundRefused("only https URLs are called")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked address, speaks TLS to the name (SNI, certificate), ends by ``deadline``."""

    def __init__(self, host: str, port: int, addresses: Sequence[IpAddress], deadline: float, timeout: float,
                 context: DeadlineTLSContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._deadline = deadline
        self._tls = context

    def connect(self) -> None:
        sock = connect_to(self._addresses, self.port, deadline=self._deadline, op_timeout=self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, addresses: Sequence[IpAddress], deadline: float,
                 timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = connect_to(self._addresses, self.port, deadline=self._deadline, op_timeout=self.timeout)


@lru_cache(maxsize=1)
def _tls_context() -> DeadlineTLSContext:
    return tls_client_context()


def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_loopback: bool,
         timeout: float = DEFAULT_TIMEOUT, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
         deadline: float | None = None) -> HttpAnswer:
    return request("POST", url, body, headers, allow_loopback=allow_loopback, timeout=timeout,
                   max_response_bytes=max_response_bytes, deadline=deadline)


def request(method: str, url: str, body: bytes | None, headers: Mapping[str, str], *, allow_loopback: bool,
            timeout: float = DEFAULT_TIMEOUT, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
            deadline: float | None = None) -> HttpAnswer:
    """One call, over by ``deadline`` (``time.monotonic()``) or ``timeout`` seconds, whichever is first."""
    scheme, host, port, path = check_url(url, allow_loopback=allow_loopback)
    policy = AddressPolicy(allow_loopback=allow_loopback)
    until = deadline_after(timeout, deadline)
    try:
        addresses = resolve(host, port, policy, until)
    except HostNotAllowed as exc:
        raise OutboundRefused(str(exc)) from exc
    except OSError as exc:
        raise OutboundFailed(str(exc)) from exc
    if scheme == "http" and not all(ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                                                        and ip.ipv4_mapped.is_loopback) for ip in addresses):
        raise OutboundRefused("plain http is only allowed to loopback")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = _PinnedHTTPSConnection(host, port, addresses, until, timeout, _tls_context())
    else:
        connection = _PinnedHTTPConnection(host, port, addresses, until, timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        data = response.read(max_response_bytes + 1)
        return HttpAnswer(response.status, data[:max_response_bytes], len(data) > max_response_bytes)
    except (OSError, http.client.HTTPException) as exc:
        raise OutboundFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
