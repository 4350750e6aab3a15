"""The one guard every connection to a tenant-supplied host goes through (HTTP, SMTP, IMAP).

A tenant chooses report URLs, attachment URLs, SMTP relays and IMAP mailboxes, so without a guard the
proxy would be a way into the network its functions run in (instance metadata, VPC hosts once the functions
are VPC-attached). Two guarantees:

* **Where**: the host is resolved once; if any of its addresses is private, loopback, link-local, instance
  metadata, unspecified, multicast, reserved, shared (CGNAT), or an IPv6 form that carries an IPv4 address to
  somewhere else (IPv4-mapped/compatible, 6to4, NAT64, Teredo), the connection is refused before a packet is
  sent. Numeric spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are read the way the C library reads
  them. The socket then connects to the checked address, so a second DNS answer cannot differ from the
  first; the name is kept for TLS (SNI and the certificate check). An administrator's allow-list of networks
  admits relays inside a VPC; loopback only when the local stack allows it; metadata addresses never.
* **How long**: a connection has a total deadline (``time.monotonic()`` value). Every blocking call on its
  socket, TLS included, is bounded by the time left, so a server that answers one byte every half second
  cannot hold a function past the deadline: :class:`DeadlineExceeded` (a ``TimeoutError``) is raised.

The refusal text (:data:`NOT_ALLOWED`) is the same whatever the address was, and names no address: a
tenant learns nothing about the network from it.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NOT_ALLOWED = "host not allowed: resolves to a private or reserved address"

# Never reachable, whatever the allow-list says: the instance/task metadata and the Amazon DNS endpoints.
_METADATA = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32", "169.254.169.253/32", "169.254.170.2/32", "169.254.170.23/32",
    "fd00:ec2::254/128", "fd00:ec2::253/128", "fd00:ec2::23/128",
))
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
# Not public: refused unless allow-listed. Written out rather than taken from ``is_global`` alone, whose
# answers differ between Python versions (multicast counts as global in some).
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/8",  # unspecified, loopback, IPv4-compatible (::a.b.c.d); IPv4-mapped is unwrapped before this
    "64:ff9b::/96", "64:ff9b:1::/48",  # NAT64: reaches whatever IPv4 address it embeds
    "100::/64", "2001::/23",  # discard; IETF protocol assignments (Teredo 2001::/32 among them)
    "2001:db8::/32", "2002::/16",  # documentation; 6to4 (embeds an IPv4 address)
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
# RFC 6761: ``localhost`` and every name under it are loopback, whatever a resolver would say
_LOOPBACK_NAME = re.compile(r"(?:[^.]+\.)*localhost\.?", re.IGNORECASE)
_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")


class HostNotAllowed(Exception):
    """The host (or one of its addresses) may not be connected to; retrying will not help."""

    def __init__(self) -> None:
        super().__init__(NOT_ALLOWED)


class HostUnresolved(OSError):
    """The name has no address now (DNS failure or no answer in time); it may resolve later."""


class DeadlineExceeded(TimeoutError):
    """The connection's total time is up."""

    def __init__(self, what: str = "the connection") -> None:
        super().__init__(f"{what} did not finish within the time allowed")


# --------------------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to: public ones, ``allowed_networks`` (an administrator's relays
    inside a VPC) and loopback when ``allow_loopback`` (local stack and tests only). Metadata never."""

    allow_loopback: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()

    def permits(self, ip: IpAddress) -> bool:
        ip = _unwrap(ip)
        if _within(ip, _METADATA):
            return False
        if _within(ip, self.allowed_networks):
            return True
        if _within(ip, _LOOPBACK):
            return self.allow_loopback
        if _within(ip, _NOT_PUBLIC):
            return False
        return ip.is_global and not ip.is_multicast

    def check(self, ip: IpAddress) -> None:
        if not self.permits(ip):
            raise HostNotAllowed()

    def check_literal(self, host: str) -> None:
        """Refuses ``host`` now if it is a numeric address, or a ``localhost`` name, this policy refuses; another
        name passes (it is checked when connecting). For early answers such as a 422 when an account is saved."""
        ip = literal_address(host)
        if ip is None and _LOOPBACK_NAME.fullmatch(connect_name(host)):
            ip = _LOCALHOST
        if ip is not None:
            self.check(ip)


def parse_networks(text: str | None) -> tuple[IpNetwork, ...]:
    """``"10.0.0.0/8, 192.168.5.0/24"`` (commas or spaces) → networks; raises ValueError on a bad entry."""
    networks = []
    for entry in re.split(r"[\s,]+", (text or "").strip()):
        if entry:
            networks.append(ipaddress.ip_network(entry, strict=True))
    return tuple(networks)


def _within(ip: IpAddress, networks: Iterable[IpNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def _unwrap(ip: IpAddress) -> IpAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def literal_address(host: str) -> IpAddress | None:
    """The address ``host`` spells out, or None if it is a name.

    Accepts what the C resolver accepts as numbers: dotted IPv4 with 1-4 parts, each decimal, octal
    (leading 0) or hexadecimal (0x), so ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` are all 127.0.0.1;
    IPv6 with or without brackets.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(p) for p in parts):
        return None
    values = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
              for p in parts]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def connect_name(host: str) -> str:
    """The host as a resolver and TLS want it: an IPv6 literal without its brackets."""
    host = host.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


# ------------------------------------------------------------------------------------------ deadlines


def deadline_after(seconds: float, deadline: float | None = None) -> float:
    """The earlier of ``deadline`` and ``seconds`` from now (a configured timeout caps a caller's deadline)."""
    capped = time.monotonic() + seconds
    return capped if deadline is None else min(deadline, capped)


def time_left(deadline: float, what: str = "the connection") -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(what)
    return left


class _DeadlineMixin:
    """Every blocking call first sets the socket timeout to min(per-operation timeout, time left)."""

    deadline: float = math.inf
    op_timeout: float | None = None

    def _arm(self) -> None:
        left = time_left(self.deadline)
        timeout = left if self.op_timeout is None else min(self.op_timeout, left)
        super().settimeout(timeout)  # type: ignore[misc]

    def _timed(self, call: Any, *args: Any) -> Any:
        self._arm()
        try:
            return call(*args)
        except TimeoutError as exc:
            if time.monotonic() >= self.deadline and not isinstance(exc, DeadlineExceeded):
                raise DeadlineExceeded() from exc
            raise

    def settimeout(self, value: float | None) -> None:
        self.op_timeout = value
        if math.isinf(self.deadline):
            super().settimeout(value)  # type: ignore[misc]
        else:
            left = max(self.deadline - time.monotonic(), 0.001)
            super().settimeout(left if value is None else min(value, left))  # type: ignore[misc]

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline

    def recv(self, *args: Any) -> Any:
        return self._timed(super().recv, *args)  # type: ignore[misc]

    def recv_into(self, *args: Any) -> Any:
        return self._timed(super().recv_into, *args)  # type: ignore[misc]

    def send(self, *args: Any) -> Any:
        return self._timed(super().send, *args)  # type: ignore[misc]

    def sendall(self, *args: Any) -> Any:
        return self._timed(super().sendall, *args)  # type: ignore[misc]


class DeadlineSocket(_DeadlineMixin, socket.socket):
    """A TCP socket bounded by a total deadline (see the module doc)."""


class DeadlineTLSSocket(_DeadlineMixin, ssl.SSLSocket):
    """The TLS side of a :class:`DeadlineSocket`; the handshake is bounded too."""

    def do_handshake(self, block: bool = False) -> None:
        self._timed(super().do_handshake, block)


class DeadlineTLSContext(ssl.SSLContext):
    """A client TLS context whose sockets keep the deadline of the socket they wrap."""

    sslsocket_class = DeadlineTLSSocket

    def wrap_socket(self, sock: socket.socket, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        deadline = getattr(sock, "deadline", math.inf)
        op_timeout = getattr(sock, "op_timeout", sock.gettimeout())
        tls = super().wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False,
                                  suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
                                  session=session)
        if isinstance(tls, DeadlineTLSSocket):
            tls.deadline, tls.op_timeout = deadline, op_timeout
        if do_handshake_on_connect:
            try:
                tls.do_handshake()
            except BaseException:
                tls.close()
                raise
        return tls


def tls_client_context(*, cafile: str | None = None, verify: bool = True) -> DeadlineTLSContext:
    """What ``ssl.create_default_context()`` gives a client, as a :class:`DeadlineTLSContext`."""
    context = DeadlineTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def set_deadline(sock: socket.socket | None, deadline: float) -> None:
    """Give an open guarded socket a new deadline (a cached connection used by a new call)."""
    if isinstance(sock, _DeadlineMixin):
        sock.set_deadline(deadline)


# ------------------------------------------------------------------------------------------ connecting


def resolve(host: str, port: int, policy: AddressPolicy, deadline: float) -> list[IpAddress]:
    """The addresses of ``host``, every one checked; raises :class:`HostNotAllowed` if any is refused,
    :class:`HostUnresolved` if there are none (or DNS did not answer before the deadline)."""
    name = connect_name(host)
    literal = literal_address(name)
    if literal is not None:
        policy.check(literal)
        return [literal]
    policy.check_literal(name)  # a localhost name: refused before DNS is asked when loopback is
    infos = _getaddrinfo(name, port, deadline)
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
    if not addresses:
        raise HostUnresolved(f"{name} has no address")
    for ip in addresses:
        policy.check(ip)
    return addresses


def _getaddrinfo(name: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` cannot be interrupted: it runs in a daemon thread, and we stop waiting at the deadline."""
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, name="resolve", daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0.0))
    if worker.is_alive():
        raise HostUnresolved(f"cannot resolve {name}: no answer in time")
    if "error" in outcome:
        raise HostUnresolved(f"cannot resolve {name}: {outcome['error']}")
    return list(outcome["infos"])


def connect(host: str, port: int, policy: AddressPolicy, *, deadline: float,
            op_timeout: float | None = None) -> DeadlineSocket:
    """A TCP connection to a checked address of ``host``, bounded by ``deadline`` (see the module doc).

    Raises :class:`HostNotAllowed`, :class:`HostUnresolved`, :class:`DeadlineExceeded` or the last
    connection error.
    """
    return connect_to(resolve(host, port, policy, deadline), port, deadline=deadline, op_timeout=op_timeout)


def connect_to(addresses: Sequence[IpAddress], port: int, *, deadline: float,
               op_timeout: float | None = None) -> DeadlineSocket:
    """A TCP connection to the first of ``addresses`` (already checked by :func:`resolve`) that answers."""
    last_error: OSError = HostUnresolved("no address to connect to")
    for ip in addresses:
        sock = DeadlineSocket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.deadline, sock.op_timeout = deadline, op_timeout
        try:
            sock._timed(sock.connect, (str(ip), port))
            return sock
        except DeadlineExceeded:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error
