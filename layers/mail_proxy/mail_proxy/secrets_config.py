"""Where the encryption keys and the admin token hash come from.

In AWS: two Secrets Manager secrets, ``SECRET_ID`` (the encryption key, read by the functions that
encrypt or decrypt) and ``ADMIN_SECRET_ID`` (the admin token hash, read by the authorizer alone), through
Powertools parameters, cached five minutes; a value that does not decrypt re-reads the key at once,
which is what a rotation looks like. Locally: ``MAIL_PROXY_ENCRYPTION_KEY`` or
``/run/secrets/encryption_key``, and ``GMP_API_TOKEN``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mail_proxy.crypto import DecryptionError, KeyRing, key_ring_from_environment, key_ring_from_secret
from mail_proxy.errors import ConfigurationError
from mail_proxy.settings import get_settings
from mail_proxy.tokens import hash_token

SECRET_MAX_AGE_SECONDS = 300

_key_ring: KeyRing | None = None


def key_ring(*, force_fetch: bool = False) -> KeyRing:
    global _key_ring
    if _key_ring is None or force_fetch:
        secret_id = get_settings().secret_id
        _key_ring = key_ring_from_secret(_read_json(secret_id, force_fetch)) if secret_id \
            else key_ring_from_environment()
    return _key_ring


def admin_token_hash() -> str | None:
    """The admin token's SHA-256, or None when no admin token is configured (admin routes then refuse all)."""
    secret_id = get_settings().admin_secret_id
    if secret_id:
        value = _read_json(secret_id, False).get("admin_token_hash")
        return str(value).lower() if value else None
    token = os.environ.get("GMP_API_TOKEN", "")
    return hash_token(token) if token else None


def reset_secrets() -> None:
    global _key_ring
    _key_ring = None


def _read_json(secret_id: str, force_fetch: bool) -> dict[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    raw: Any = parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"secret {secret_id} is not JSON") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"secret {secret_id} must be a JSON object")
    return data


def decrypt(value: str, *, context: str) -> str:
    """Decrypt with the cached ring; on failure re-read the key once (it may have been rotated)."""
    try:
        return key_ring().decrypt(value, context=context)
    except DecryptionError:
        if not get_settings().secret_id:
            raise
        return key_ring(force_fetch=True).decrypt(value, context=context)


def encrypt(value: str, *, context: str) -> str:
    return key_ring().encrypt(value, context=context)
