"""For the application's side of delivery reports: checking the ``X-Mail-Proxy-Signature`` header.

The proxy signs each report call with ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed with
the tenant's signing secret (one ``v1`` per valid secret while a new secret is being phased in). Check the
raw body exactly as received, before parsing it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Mail-Proxy-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def verify_signature(header: str | None, raw_body: bytes, secret: str, *,
                     tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """True if ``header`` signs ``raw_body`` with ``secret`` and its time is within ``tolerance`` seconds
    (which stops an old call from being replayed)."""
    if not header:
        return False
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    times = [value for name, value in pairs if name == "t"]
    if len(times) != 1 or not times[0].isdigit():
        return False
    moment = int(times[0])
    if abs((time.time() if now is None else now) - moment) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{moment}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for name, value in pairs if name == "v1")
