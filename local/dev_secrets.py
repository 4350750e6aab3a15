"""The admin token and encryption key of the local stack.

In AWS both come from Secrets Manager; locally they come from `GMP_API_TOKEN` and `MAIL_PROXY_ENCRYPTION_KEY`
when set, otherwise from files under the state directory, generated once, so a restarted stack keeps the
same admin token (the developer's curl commands keep working) and the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "admin_token"  # noqa: S105 - a file name, not a secret
KEY_FILE = "encryption_key"


def new_admin_token() -> str:
    """A random token with a prefix, so it never starts with "-" and a command line never reads it as an option."""
    return "adm_" + secrets.token_urlsafe(32)


class SecretConfigError(Exception):
    """A configured secret is unusable (a key that is not base64 of 32 bytes)."""


@dataclass(frozen=True)
class DevSecrets:
    admin_token: str
    encryption_key: str
    token_source: str
    key_source: str


def _read_or_create(path: Path, generate: str) -> tuple[str, bool]:
    """The file's stripped content, or `generate` written to a new 0600 file."""
    try:
        return path.read_text(encoding="ascii").strip(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(generate + "\n")
    return generate, True


def check_key(value: str, source: str) -> str:
    """Refuses a key that is not base64 of exactly 32 bytes, rather than failing at the first encryption."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SecretConfigError(f"{source}: the encryption key is not valid base64") from None
    if len(raw) != 32:
        raise SecretConfigError(f"{source}: the encryption key must decode to 32 bytes, not {len(raw)}")
    return value


def load_dev_secrets(state_dir: Path, api_token: str | None = None) -> DevSecrets:
    """Token: `api_token`, else `GMP_API_TOKEN`, else the state file; key: env, else the state file."""
    if api_token:
        token, token_source = api_token, "--api-token"
    elif os.environ.get("GMP_API_TOKEN"):
        token, token_source = os.environ["GMP_API_TOKEN"], "GMP_API_TOKEN"
    else:
        token_path = state_dir / TOKEN_FILE
        token, created = _read_or_create(token_path, new_admin_token())
        token_source = f"{'generated in' if created else 'read from'} {token_path}"
    if os.environ.get("MAIL_PROXY_ENCRYPTION_KEY"):
        key = check_key(os.environ["MAIL_PROXY_ENCRYPTION_KEY"], "MAIL_PROXY_ENCRYPTION_KEY")
        key_source = "MAIL_PROXY_ENCRYPTION_KEY"
    else:
        key_path = state_dir / KEY_FILE
        key, created = _read_or_create(key_path, base64.b64encode(os.urandom(32)).decode())
        key = check_key(key, str(key_path))
        key_source = f"{'generated in' if created else 'read from'} {key_path}"
    if not token:
        raise SecretConfigError(f"empty admin token ({token_source})")
    return DevSecrets(token, key, token_source, key_source)
