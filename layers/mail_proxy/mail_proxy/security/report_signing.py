"""Signatures on delivery reports: ``X-Mail-Proxy-Signature: t=<unix>,v1=<hex>[,v1=<hex>]``.

``v1`` is HMAC-SHA256 over ``"<t>.<raw body>"`` with the tenant's signing secret. While a rotated secret is
in its grace period the header carries one ``v1`` per valid secret, so a receiver that still knows only
the old secret keeps verifying. Receivers should also refuse a ``t`` older than a few minutes (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

HEADER = "X-Mail-Proxy-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets_in_use: Sequence[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets_in_use)])


def verify(header: str, body: bytes, secret: str, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """What a receiver does (the documented snippet in docs/reports.md is this function)."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [v for k, v in fields if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    # bytes, not str: compare_digest refuses non-ASCII text, and a forged header must be a False, not a crash
    return any(hmac.compare_digest(expected.encode(), v.strip().encode("utf-8", "replace"))
               for k, v in fields if k.strip() == "v1")
