"""Download links for large files moved out of a message (``rewrite``).

A link is ``<api>/files/<token>``; the token names the object and its expiry and is signed with a key
derived from the encryption key, so links need no table and last exactly ``file_ttl_days``. The API
answers a valid link with a redirect to a presigned S3 URL that lives five minutes (a presigned URL made
with a Lambda role's temporary credentials could not outlive the role's session).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from mail_proxy.security.crypto import KeyRing, derived_key


@dataclass(frozen=True)
class FileLink:
    key: str
    filename: str
    expires_ts: int


def _link_key(raw_key: bytes) -> bytes:
    return derived_key(raw_key, "mail-proxy file links")


def make_token(ring: KeyRing, link: FileLink) -> str:
    body = base64.urlsafe_b64encode(json.dumps(
        {"k": link.key, "f": link.filename, "e": link.expires_ts}, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(_link_key(ring.current), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{mac}"


def read_token(ring: KeyRing, token: str) -> FileLink | None:
    """The link a token stands for, or None if it is forged or malformed (expiry is the caller's check)."""
    body, _, mac = token.partition(".")
    # a decoded path may hold any character: compare_digest refuses non-ASCII text, so such a token is forged
    if not body or not mac or not token.isascii():
        return None
    keys = (ring.current, *ring.previous)
    if not any(hmac.compare_digest(hmac.new(_link_key(k), body.encode(), hashlib.sha256).hexdigest()[:32], mac)
               for k in keys):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return FileLink(str(data["k"]), str(data["f"]), int(data["e"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
