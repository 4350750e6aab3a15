"""API tokens: generated with enough entropy, stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def generate_token() -> str:
    return "gmp_" + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hashes_match(expected_hash: str | None, token_hash: str) -> bool:
    if not expected_hash:
        return False
    return hmac.compare_digest(expected_hash.encode("ascii"), token_hash.encode("ascii"))
