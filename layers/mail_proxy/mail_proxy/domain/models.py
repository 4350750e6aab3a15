"""The domain's shared vocabulary: identifiers, limits, statuses, the base input and view models, and the
field checks the tenant, account and message models share (pure: no AWS, no I/O).

The models themselves are in ``tenant_models`` (tenants, their settings and suppression list),
``account_models`` (SMTP accounts) and ``message_models`` (messages in, records out). Input models forbid
unknown fields: a typo such as ``defered_ts`` must be an error, not a message sent at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mail_proxy.errors import InvalidInputError
from mail_proxy.mail.addresses import (
    AddressError,
    check_addr_spec,
    check_header_value,
    check_host,
)
from mail_proxy.security.address_guard import AddressPolicy, HostNotAllowed

TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.@+-]{1,128}$"
MESSAGE_ID_PATTERN = r"^[!-~]{1,128}$"  # printable ASCII, no spaces: it travels in X-Mail-Proxy-ID
BATCH_CODE_PATTERN = r"^[!-~]{1,64}$"
MAX_MESSAGES_PER_CALL = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc of one message: its outcome must always fit one small write
RETENTION_SECONDS = 7 * 24 * 3600  # a final message is kept this long after its report (or outcome, without one)
MAX_DEFER_SECONDS = 30 * 24 * 3600  # deferred_ts at most this far ahead: stored content outlives it
SMTP_PORT_BLOCKED_IN_LAMBDA = 25

TenantId = Annotated[str, Field(pattern=TENANT_ID_PATTERN, description="[A-Za-z0-9_-]{1,64}")]
AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
MessageId = Annotated[str, Field(pattern=MESSAGE_ID_PATTERN, description="1-128 printable characters")]


class View(BaseModel):
    """Answers of the API; built on first use like every model here."""

    model_config = ConfigDict(defer_build=True)


class Strict(BaseModel):
    # schemas are built on first use, not at import: a cold start pays only for the models it touches
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


class Role(StrEnum):
    ADMIN = "admin"
    TENANT = "tenant"
    ANONYMOUS = "anonymous"


class MessageStatus(StrEnum):
    PENDING = "pending"
    DEFERRED = "deferred"
    SENDING = "sending"
    SENT = "sent"
    ERROR = "error"
    BOUNCED = "bounced"


WAITING_STATUSES = frozenset({MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.SENDING})
FINAL_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.ERROR, MessageStatus.BOUNCED})
PRIORITY_LABELS = {"immediate": 0, "high": 1, "medium": 2, "low": 3}
DEFAULT_PRIORITY = 2


TENANT_SUSPENDED_DETAIL = "tenant suspended by an administrator"


def normalise_priority(value: object, default: int = DEFAULT_PRIORITY) -> int:
    """0-3 or a label; anything else is an error (not silently clamped)."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("priority must be 0-3 or one of immediate, high, medium, low")
    if isinstance(value, int) and 0 <= value <= 3:
        return value
    if isinstance(value, str) and value.strip().lower() in PRIORITY_LABELS:
        return PRIORITY_LABELS[value.strip().lower()]
    if isinstance(value, str) and value.strip() in {"0", "1", "2", "3"}:
        return int(value.strip())
    raise ValueError(f"priority {value!r} is not 0-3 or one of immediate, high, medium, low")


def _no_control(value: str | None, field: str) -> str | None:
    if value is not None:
        try:
            check_header_value(value, field=field)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _alias(data: Any, alias: str, name: str) -> Any:
    """genro-mail-proxy's field name ``alias`` accepted for ``name``; both given and different is an error."""
    if not isinstance(data, dict) or alias not in data:
        return data
    data = dict(data)
    value = data.pop(alias)
    if name in data and data[name] != value:
        raise ValueError(f"{alias} and {name} name the same field and differ")
    data[name] = value
    return data


def _url(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    _no_control(value, field)
    if not re.fullmatch(r"https?://[^\s/?#]+\S*", value):
        raise ValueError(f"{field} must be an http(s) URL")
    return value.rstrip("/")


def _host_name(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return check_host(value, field=field)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


def check_literal_host(host: str | None, policy: AddressPolicy, loc: Sequence[str]) -> None:
    """A host written as an address (``10.0.0.5``, ``[::1]``, ``2130706433``, ``0x7f.1``) that the policy
    refuses is refused when it is saved (422), not only when it is connected to; names are checked then."""
    if not host:
        return
    try:
        policy.check_literal(host)
    except HostNotAllowed as exc:
        raise InvalidInputError([{"loc": list(loc), "msg": str(exc), "type": "value_error"}]) from exc


def _bare_address(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check_addr_spec(value.strip(), field=field)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc
