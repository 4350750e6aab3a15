"""The ``X-Mail-Proxy-Tag`` every outgoing message carries: proof that returned mail is about a message the
proxy sent.

``X-Mail-Proxy-ID: <tenant>/<message id>`` is readable by anyone who receives one message, and message ids
are often guessable (``order-1001``), so a stranger could mail the bounce mailbox reports naming other
messages. The tag is a truncated HMAC-SHA256 of ``<tenant>/<message id>`` under a key derived from the
encryption key (as unsubscribe and file links derive theirs, with another label): only the proxy can make
it, and a tag made before a key rotation still verifies while the old key is in the ring. Returned mail
whose reference has no valid tag is ignored like mail that names no message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from mail_proxy.security.crypto import KeyRing, derived_key

TAG_HEADER = "X-Mail-Proxy-Tag"
_TAG_BYTES = 20  # 32 base32 characters


def _tag_key(raw_key: bytes) -> bytes:
    return derived_key(raw_key, "mail-proxy returned-mail tags")


def _tag(raw_key: bytes, tenant_id: str, message_id: str) -> str:
    digest = hmac.new(_tag_key(raw_key), f"{tenant_id}/{message_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:_TAG_BYTES]).decode("ascii").rstrip("=").lower()


def make_tag(ring: KeyRing, tenant_id: str, message_id: str) -> str:
    """The tag of the proxy's message ``message_id`` of ``tenant_id``, under the current key."""
    return _tag(ring.current, tenant_id, message_id)


def tag_is_valid(ring: KeyRing, tenant_id: str, message_id: str, tag: str | None) -> bool:
    """Whether ``tag`` was made by the proxy for this message with any key still in the ring."""
    if not tag or not tag.isascii():
        return False
    given = tag.strip().lower()
    return any(hmac.compare_digest(_tag(key, tenant_id, message_id), given) for key in (ring.current, *ring.previous))
