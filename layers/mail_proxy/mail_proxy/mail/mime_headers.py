"""Header values of the outgoing email encoded once, in their wire form, and the error every part of MIME
building raises for a payload that can never be sent. Pure: no AWS, no I/O.

Headers are encoded once while building and kept in that form (see :class:`_WireHeader`): the stdlib's
generic header parser and refolder cost about 0.5 ms a message, more than an SMTP round trip. The names
with a leading underscore are shared by the ``mime*`` modules of this package only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.policy import EmailPolicy
from functools import lru_cache
from typing import Any

from mail_proxy.errors import DeliveryError

_MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD
_HARD_MAX_LINE = 998  # RFC 5322 2.1.1: MUST
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII but ':'
_MSG_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII but '<' and '>'
_UTF8 = "utf-8"


class MalformedMessageError(DeliveryError, ValueError):
    """The payload can never become a sendable message; ``str(error)`` is the reason to record."""

    @property
    def reason(self) -> str:
        return str(self)


# --- the policy ------------------------------------------------------------------------------------


_REGISTRY = HeaderRegistry()


@lru_cache(maxsize=512)
def _header_max_count(lower_name: str) -> int | None:
    return _REGISTRY[lower_name].max_count


class _SmtpPolicy(EmailPolicy):
    """``email.policy.SMTP`` with the per-header registry lookup memoised.

    ``HeaderRegistry.__getitem__`` builds a new class on every call, and ``Message.__setitem__`` asks it
    for every header set; the answer depends only on the name.
    """

    def header_max_count(self, name: str) -> int | None:
        return _header_max_count(name.lower())


_SMTP_POLICY = _SmtpPolicy(linesep="\r\n")
_SMTPUTF8_POLICY = _SMTP_POLICY.clone(utf8=True)  # RFC 6532 headers: an address with a UTF-8 local part


class _WireHeader(str):
    """A header value encoded and folded once, at build time.

    The ``str`` value is the readable (decoded) text, as with the stdlib's header objects; ``fold`` gives
    the wire form. Having a ``name`` makes ``EmailPolicy`` store and fold it as a header object instead of
    re-parsing it (documented in ``email.policy``).
    """

    name: str
    max_count: int | None = None
    defects: tuple[Any, ...] = ()
    _lines: tuple[str, ...]

    def __new__(cls, name: str, value: str, lines: Sequence[str]) -> _WireHeader:
        header = super().__new__(cls, value)
        header.name = name
        header._lines = tuple(lines)
        return header

    def fold(self, *, policy: Any) -> str:
        linesep: str = policy.linesep
        return f"{self.name}: {linesep.join(self._lines)}{linesep}"


def _raw_header(name: str, value: str) -> _WireHeader:
    """A header value already known to be short ASCII."""
    return _WireHeader(name, value, (value,))


def _fold(name: str, value: str) -> list[str]:
    """Fold ASCII ``value`` at spaces so lines stay within 78 characters where a space allows it."""
    if len(name) + 2 + len(value) <= _MAX_LINE:
        lines = [value]
    else:
        words = value.split(" ")
        lines = []
        current = words[0]
        width = len(name) + 2
        for word in words[1:]:
            if width + len(current) + 1 + len(word) > _MAX_LINE and current.strip():
                lines.append(current)
                current, width = " " + word, 0
            else:
                current += " " + word
        lines.append(current)
    if len(name) + 2 + len(lines[0]) > _HARD_MAX_LINE or any(len(line) > _HARD_MAX_LINE for line in lines):
        raise MalformedMessageError(f"header {name!r} has a word longer than {_HARD_MAX_LINE} characters")
    return lines


def _check_text(value: str, field: str) -> str:
    if _CONTROL.search(value):
        raise MalformedMessageError(f"{field} contains a line break or control character")
    return value


def _unstructured(name: str, value: str, field: str) -> _WireHeader:
    _check_text(value, field)
    if value.isascii():
        lines = _fold(name, value)
    else:
        encoded = Header(value, _UTF8, maxlinelen=_MAX_LINE, header_name=name).encode(linesep="\n")
        lines = encoded.split("\n")
    return _WireHeader(name, value, lines)
