"""Where the encryption keys and the admin token hash come from.

In AWS: two Secrets Manager secrets, ``SECRET_ID`` (the encryption key, read by the functions that
encrypt or decrypt) and ``ADMIN_SECRET_ID`` (the admin token hash, read by the authorizer alone), through
Powertools parameters, cached five minutes. Locally: ``MAIL_PROXY_ENCRYPTION_KEY`` or
``/run/secrets/encryption_key``, and ``GMP_API_TOKEN``.

The key ring follows its source: a warm container reads it again once it is older than
``MAIL_PROXY_SECRET_MAX_AGE_SECONDS`` (five minutes by default, on ``mail_proxy.domain.clock``), so after a rotation
every container encrypts with the new current key within that period; that is the wait the documented
rotation makes before ``reencrypt``. A value that does not decrypt re-reads the key at once (another
container may already write with the new key). A refresh that fails keeps the ring it had, logged, and is
tried again shortly, so an unreachable Secrets Manager does not stop every delivery.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from mail_proxy.adapters.observability import logger
from mail_proxy.domain import clock
from mail_proxy.errors import ConfigurationError
from mail_proxy.security.crypto import DecryptionError, KeyRing, key_ring_from_environment, key_ring_from_secret
from mail_proxy.security.tokens import hash_token
from mail_proxy.settings import SECRET_MAX_AGE_SECONDS, AuthorizerSettings, FunctionSettings, get_settings

REFRESH_RETRY_SECONDS = 30

_key_ring: KeyRing | None = None
_key_ring_read_at = 0.0
_key_ring_lock = threading.Lock()


def key_ring(*, force_fetch: bool = False) -> KeyRing:
    """The current ring, read again when older than the cache period (or at once with ``force_fetch``)."""
    global _key_ring, _key_ring_read_at
    settings = get_settings(FunctionSettings)
    with _key_ring_lock:
        ring = _key_ring
        if ring is not None and not force_fetch and clock.now() - _key_ring_read_at < settings.secret_max_age:
            return ring
        try:
            fresh = key_ring_from_secret(_read_json(settings.secret_id, True)) if settings.secret_id \
                else key_ring_from_environment()
        except Exception as exc:
            if ring is None or force_fetch:
                raise
            # keep encrypting and decrypting with what we have; try again shortly
            logger.warning("encryption key not re-read; the cached key ring stays in use",
                           extra={"error": type(exc).__name__})
            _key_ring_read_at = clock.now() - settings.secret_max_age + REFRESH_RETRY_SECONDS
            return ring
        if ring is not None and fresh.current_id != ring.current_id:
            logger.info("encryption key changed", extra={"key_id": fresh.current_id, "old_key_id": ring.current_id})
        _key_ring, _key_ring_read_at = fresh, clock.now()
        return fresh


def admin_token_hash() -> str | None:
    """The admin token's SHA-256, or None when no admin token is configured (admin routes then refuse all)."""
    secret_id = get_settings(AuthorizerSettings).admin_secret_id
    if secret_id:
        value = _read_json(secret_id, False).get("admin_token_hash")
        return str(value).lower() if value else None
    token = os.environ.get("GMP_API_TOKEN", "")
    return hash_token(token) if token else None


def reset_secrets() -> None:
    global _key_ring, _key_ring_read_at
    _key_ring, _key_ring_read_at = None, 0.0


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
        if not get_settings(FunctionSettings).secret_id:
            raise
        return key_ring(force_fetch=True).decrypt(value, context=context)


def encrypt(value: str, *, context: str) -> str:
    return key_ring().encrypt(value, context=context)
