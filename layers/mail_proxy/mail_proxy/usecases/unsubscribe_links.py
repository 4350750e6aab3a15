"""One-click unsubscribe links (RFC 8058): which messages carry them, and the signed token in them.

A link is ``<api>/unsubscribe/<token>``. The token names the tenant, the recipient, the list (the message's
``batch_code`` when the tenant scopes unsubscribes per batch, else none: all the tenant's mail) and the
message (so the click reaches the application as an event of that message), with an expiry. It is signed
with a key derived from the encryption key (as ``/files`` links are), so it needs no table and no login,
and a link made before a key rotation keeps working while the old key is in the ring.

A message gets the headers when it says ``"unsubscribe": true``, or when its tenant's ``unsubscribe.default``
is on and the message neither says ``false`` nor carries its own ``List-Unsubscribe``; in both cases only a
message with exactly one recipient (a link unsubscribes the one person it names).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mail_proxy.adapters.observability import logger
from mail_proxy.domain.entities import Tenant
from mail_proxy.mail.mime import ListUnsubscribe
from mail_proxy.mail.mime_addresses import envelope_recipients
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.security.crypto import KeyRing, derived_key

LINK_DAYS = 365  # how long a link in a delivered message keeps working
MAX_TOKEN_CHARS = 2048  # as the route's path limit (unsubscribe_api)
MAX_LINK_CHARS = 900  # "List-Unsubscribe: <link>," must fit one header line (998 characters)
_MAC_BYTES = 16


@dataclass(frozen=True)
class UnsubscribeLink:
    tenant_id: str
    address: str
    list_id: str | None  # the batch_code unsubscribed from; None: every message of the tenant
    message_id: str
    expires_ts: int


def _link_key(raw_key: bytes) -> bytes:
    return derived_key(raw_key, "mail-proxy unsubscribe links")


def _mac(raw_key: bytes, body: str) -> str:
    digest = hmac.new(_link_key(raw_key), body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(ring: KeyRing, link: UnsubscribeLink) -> str:
    fields = [link.tenant_id, link.address, link.list_id, link.message_id, link.expires_ts]
    body = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{body}.{_mac(ring.current, body)}"


def read_token(ring: KeyRing, token: str) -> UnsubscribeLink | None:
    """The link a token stands for, or None if it is forged or malformed (expiry is the caller's check)."""
    body, _, mac = token.partition(".")
    # a decoded path may hold any character: compare_digest refuses non-ASCII text, so such a token is forged
    if not body or not mac or not token.isascii() or len(token) > MAX_TOKEN_CHARS:
        return None
    if not any(hmac.compare_digest(_mac(key, body), mac) for key in (ring.current, *ring.previous)):
        return None
    try:
        tenant_id, address, list_id, message_id, expires = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return UnsubscribeLink(str(tenant_id), str(address), None if list_id is None else str(list_id),
                               str(message_id), int(expires))
    except (binascii.Error, ValueError, TypeError):
        return None


def wants_list_unsubscribe(tenant: Tenant, payload: Mapping[str, Any]) -> bool:
    """Whether the message asks for the headers, itself or by its tenant's default (the recipients aside)."""
    wanted = payload.get("unsubscribe")
    if wanted is not None:
        return bool(wanted)
    if not (tenant.unsubscribe or {}).get("default"):
        return False
    return not any(str(name).lower().startswith("list-unsubscribe") for name in payload.get("headers") or {})


def list_unsubscribe_for(tenant: Tenant, message_id: str, payload: Mapping[str, Any], *,
                         public_url: str | None, ring: KeyRing, now: int) -> ListUnsubscribe | None:
    """The ``List-Unsubscribe`` headers a message goes out with, or None for a message that gets none."""
    if not wants_list_unsubscribe(tenant, payload):
        return None
    config = tenant.unsubscribe or {}
    try:
        recipients = envelope_recipients(payload)
    except MalformedMessageError:
        return None  # rendering fails the message with the reason
    if len(recipients) != 1:
        return None
    uris: list[str] = []
    if public_url:
        link = UnsubscribeLink(tenant_id=tenant.tenant_id, address=recipients[0],
                               list_id=payload.get("batch_code") if config.get("per_batch") else None,
                               message_id=message_id, expires_ts=now + LINK_DAYS * 86400)
        uri = f"{public_url.rstrip('/')}/unsubscribe/{make_token(ring, link)}"
        if len(uri) <= MAX_LINK_CHARS:
            uris.append(uri)
        else:  # a header line holds at most 998 characters: the message goes without the link, never fails
            logger.warning("unsubscribe link too long for a header line; left out",
                           extra={"tenant_id": link.tenant_id, "message_id": message_id, "length": len(uri)})
    if config.get("mailto"):
        uris.append(f"mailto:{quote(str(config['mailto']), safe='@+')}?subject=unsubscribe")
    one_click = bool(uris) and not uris[0].startswith("mailto:")
    return ListUnsubscribe(tuple(uris), one_click=one_click) if uris else None
