"""The proxy's one address grammar, and header-value checks: strict enough that a bad address is refused at the
API (422, the field named) and never reaches a retry loop.

* A mailbox address (:func:`check_addr_spec`; the API's models and :mod:`mail_proxy.mail.mime_addresses` both use
  it, so what the API accepts is what the sender can send): a dot-atom local part, ASCII or UTF-8 (RFC 6531: sent
  with SMTPUTF8, and refused by a server that does not offer it), and a domain of two labels or more, ASCII or
  international (IDNA-encoded here, as in the envelope and headers, so ``user@exämple.org`` is kept as
  ``user@xn--exmple-cua.org``). No quoted local part (``"jo smith"@example.org``), no address literal
  (``jo@[127.0.0.1]``) and no single-label domain (``jo@localhost``): many relays refuse them, and none of them is
  an address on the public mail system.
* A host the proxy connects to (:func:`check_host`: SMTP relays, IMAP servers): a name of letters, digits and
  hyphens, one label or more (``relay``, ``localhost``), or an IP address (IPv6 in brackets). Numbers such as
  ``10.0.0.5``, ``2130706433`` or ``0x7f.1`` and the names ``localhost`` and ``*.localhost`` are read as the
  addresses they are by :mod:`mail_proxy.security.address_guard`, which refuses a private one when the host is
  saved and checks every name's addresses when it connects.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import formataddr, getaddresses, parseaddr

from mail_proxy.errors import InvalidInputError

_LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"  # RFC 6531 adds UTF-8 to atext
_LOCAL = rf"{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"
_ADDR_SPEC = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
MAX_HOST_LENGTH = 253
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ADDRESS_LENGTH = 254


class AddressError(InvalidInputError, ValueError):
    """An address or header value that must not be sent."""


def check_header_value(value: str, *, field: str) -> str:
    if _CONTROL.search(value.replace("\t", " ")):
        raise AddressError(f"{field} contains a line break or control character")
    return value


def idna_domain(domain: str) -> str:
    """The domain as the envelope and headers carry it: ASCII, international labels IDNA-encoded (the
    stdlib codec, as Django's own mail code uses); raises UnicodeError for a domain IDNA cannot encode."""
    if domain.isascii():
        return domain
    if any(label.startswith("-") or label.endswith("-") for label in domain.split(".")):
        raise UnicodeError("a label starts or ends with a hyphen")  # STD 3, which the codec does not check
    return domain.encode("idna").decode("ascii")


def check_addr_spec(addr: str, *, field: str) -> str:
    """``addr`` if it is a valid address, with an international domain IDNA-encoded."""
    if "@" not in addr:
        raise AddressError(f"{field}: {addr!r} is not an e-mail address (missing @)")
    local, domain = addr.rsplit("@", 1)
    try:
        addr = f"{local}@{idna_domain(domain)}"
    except UnicodeError as exc:
        raise AddressError(f"{field}: {addr!r} has an invalid international domain") from exc
    if len(addr.encode()) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"{field}: address longer than {MAX_ADDRESS_LENGTH} characters")
    if len(local.encode()) > 64 or not _ADDR_SPEC.match(addr):
        raise AddressError(f"{field}: {addr!r} is not a valid e-mail address")
    return addr


def check_host(host: str, *, field: str) -> str:
    """``host`` if it is a host the proxy may be told to connect to (see the module doc)."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.ip_address(host[1:-1])
        except ValueError:
            raise AddressError(f"{field}: {host!r} is not an IP address in brackets") from None
        return host
    if ":" in host:
        raise AddressError(f"{field} must be a host name or an IP address (an IPv6 address in brackets)")
    if len(host) > MAX_HOST_LENGTH or not _HOST_NAME.fullmatch(host):
        raise AddressError(f"{field} must be a host name or an IP address")
    return host


def _mailbox_text(name: str, addr: str) -> str:
    """``Name <addr>``; ``formataddr`` refuses a UTF-8 local part, so the name is quoted by it alone."""
    if not name:
        return addr
    if addr.isascii():
        return formataddr((name, addr))
    placeholder = "x@x.invalid"
    return formataddr((name, placeholder))[: -len(placeholder) - 2] + f"<{addr}>"


def parse_mailbox(value: str, *, field: str) -> str:
    """One address, optionally with a display name ("Name <a@b.c>"); returned normalised."""
    check_header_value(value, field=field)
    if value.count("@") != 1 and "<" not in value:
        raise AddressError(f"{field}: expected exactly one e-mail address, got {value!r}")
    name, addr = parseaddr(value)
    if not addr:
        raise AddressError(f"{field}: {value!r} is not a valid e-mail address")
    return _mailbox_text(name, check_addr_spec(addr, field=field))


def parse_address_list(value: str | list[str] | None, *, field: str) -> list[str]:
    """A list, or a comma-separated string, of mailboxes; every one must be valid."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise AddressError(f"{field}: every address must be a string")
        check_header_value(item, field=field)
        if not item.strip():
            continue
        pairs = getaddresses([item])
        if not pairs or any(not addr for _, addr in pairs):
            raise AddressError(f"{field}: {item!r} is not a valid address list")
        for name, addr in pairs:
            result.append(_mailbox_text(name, check_addr_spec(addr, field=field)))
    return result
