"""E-mail address and header-value checks, strict enough that a bad address is refused at the API and
never reaches a retry loop."""

from __future__ import annotations

import re
from email.utils import formataddr, getaddresses, parseaddr

_LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = rf"{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"
_ADDR_SPEC = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ADDRESS_LENGTH = 254


class AddressError(ValueError):
    """An address or header value that must not be sent."""


def check_header_value(value: str, *, field: str) -> str:
    if _CONTROL.search(value.replace("\t", " ")):
        raise AddressError(f"{field} contains a line break or control character")
    return value


def check_addr_spec(addr: str, *, field: str) -> str:
    if len(addr) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"{field}: address longer than {MAX_ADDRESS_LENGTH} characters")
    if "@" not in addr:
        raise AddressError(f"{field}: {addr!r} is not an e-mail address (missing @)")
    local = addr.rsplit("@", 1)[0]
    if len(local) > 64 or not _ADDR_SPEC.match(addr):
        raise AddressError(f"{field}: {addr!r} is not a valid e-mail address")
    return addr


def parse_mailbox(value: str, *, field: str) -> str:
    """One address, optionally with a display name ("Name <a@b.c>"); returned normalised."""
    check_header_value(value, field=field)
    if value.count("@") != 1 and "<" not in value:
        raise AddressError(f"{field}: expected exactly one e-mail address, got {value!r}")
    name, addr = parseaddr(value)
    if not addr:
        raise AddressError(f"{field}: {value!r} is not a valid e-mail address")
    check_addr_spec(addr, field=field)
    return formataddr((name, addr)) if name else addr


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
            check_addr_spec(addr, field=field)
            result.append(formataddr((name, addr)) if name else addr)
    return result


def addr_part(mailbox: str) -> str:
    return parseaddr(mailbox)[1]
