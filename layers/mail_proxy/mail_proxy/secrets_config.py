"""Where the encryption keys and the admin token hash come from.

In AWS: the Secrets Manager secret named by ``SECRET_ID`` (read through Powertools parameters, cached for
five minutes, re-read at once when a value does not decrypt, which is what a rotation looks like).
Locally: ``MAIL_PROXY_ENCRYPTION_KEY`` / ``/run/secrets/encryption_key`` and ``GMP_API_TOKEN``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from mail_proxy.crypto import DecryptionError, KeyRing, key_ring_from_environment, key_ring_from_secret
from mail_proxy.errors import ConfigurationError
from mail_proxy.settings import get_settings
from mail_proxy.tokens import hash_token

SECRET_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class ProxySecrets:
    key_ring: KeyRing
    admin_token_hash: str | None

    def __repr__(self) -> str:
        return f"ProxySecrets({self.key_ring!r}, admin={'set' if self.admin_token_hash else 'unset'})"


_cached: ProxySecrets | None = None


def load_secrets(*, force_fetch: bool = False) -> ProxySecrets:
    global _cached
    if _cached is not None and not force_fetch:
        return _cached
    secret_id = get_settings().secret_id
    _cached = _from_secret(secret_id, force_fetch) if secret_id else _from_environment()
    return _cached


def reset_secrets() -> None:
    global _cached
    _cached = None


def _from_secret(secret_id: str, force_fetch: bool) -> ProxySecrets:
    from aws_lambda_powertools.utilities import parameters

    raw: Any = parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"secret {secret_id} is not JSON") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"secret {secret_id} must be a JSON object")
    admin_hash = data.get("admin_token_hash") or None
    return ProxySecrets(key_ring_from_secret(data), str(admin_hash).lower() if admin_hash else None)


def _from_environment() -> ProxySecrets:
    token = os.environ.get("GMP_API_TOKEN", "")
    return ProxySecrets(key_ring_from_environment(), hash_token(token) if token else None)


def decrypt(value: str, *, context: str) -> str:
    """Decrypt with the cached ring; on failure re-read the secret once (the key may have rotated)."""
    try:
        return load_secrets().key_ring.decrypt(value, context=context)
    except DecryptionError:
        return load_secrets(force_fetch=True).key_ring.decrypt(value, context=context)


def encrypt(value: str, *, context: str) -> str:
    return load_secrets().key_ring.encrypt(value, context=context)
