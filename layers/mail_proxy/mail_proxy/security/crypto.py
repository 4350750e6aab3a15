"""AES-256-GCM encryption of stored secrets (SMTP passwords, report credentials).

Format: ``ENC:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`` with a fresh 96-bit nonce per value and the
owner's ids as associated data, so a ciphertext copied into another tenant's or account's item does not
decrypt. The key id is a fingerprint of the key, so rotation needs no bookkeeping: values written under an
old key stay readable while that key is listed as a previous key, and ``reencrypt`` moves them over.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mail_proxy.errors import ConfigurationError, MailProxyError

PREFIX = "ENC:"
KEY_FILE = Path("/run/secrets/encryption_key")
NONCE_BYTES = 12
TAG_BYTES = 16


class DecryptionError(MailProxyError):
    """A stored value could not be decrypted: unknown key id, wrong context, or tampered data."""


def generate_key() -> str:
    """A new random key, base64 of 32 bytes, for ``MAIL_PROXY_ENCRYPTION_KEY`` or the secret."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_key(text: str | bytes, *, source: str) -> bytes:
    """Accept base64 (44 chars) or hex (64 chars, as the template's generated secret) of 32 bytes."""
    if isinstance(text, bytes) and len(text) == 32:
        return text  # the key file holds the raw 32 bytes
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode("ascii", "replace")
    candidates: list[bytes] = []
    if len(raw) == 64:
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(binascii.unhexlify(raw))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(raw, validate=True))
    for key in candidates:
        if len(key) == 32:
            return key
    raise ConfigurationError(
        f"encryption key from {source} is malformed: expected base64 or hex of exactly 32 bytes "
        "(generate one with `python -m mail_proxy keygen`)"
    )


def derived_key(key: bytes, purpose: str) -> bytes:
    """A key of its own for one use of the encryption key (links, tags): HMAC-SHA256 of ``purpose`` under it,
    so no MAC one use makes is valid for another."""
    return hmac.new(key, purpose.encode("ascii"), hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"mail-proxy-key-id:" + key).hexdigest()[:8]


@dataclass(frozen=True)
class KeyRing:
    """The current key (used to encrypt) and previous keys (still accepted to decrypt)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    _by_id: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in (self.current, *self.previous):
            if len(key) != 32:
                raise ConfigurationError("encryption keys must be 32 bytes")
            self._by_id[key_id(key)] = key

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current_id}, previous={len(self.previous)})"

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    @property
    def previous_ids(self) -> tuple[str, ...]:
        return tuple(key_id(key) for key in self.previous)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        from Crypto.Cipher import AES  # on first use: the functions that never encrypt skip its ~30 ms import

        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = AES.new(self.current, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(context.encode("utf-8"))
        sealed, tag = cipher.encrypt_and_digest(plaintext.encode("utf-8"))
        return f"{PREFIX}{self.current_id}:{base64.b64encode(nonce + sealed + tag).decode('ascii')}"

    def decrypt(self, value: str, *, context: str) -> str:
        from Crypto.Cipher import AES

        kid, blob = _split(value)
        key = self._by_id.get(kid)
        if key is None:
            raise DecryptionError(f"value was encrypted with unknown key id {kid!r}")
        try:
            data = base64.b64decode(blob, validate=True)
            if len(data) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("shorter than a nonce and a tag")
            cipher = AES.new(key, AES.MODE_GCM, nonce=data[:NONCE_BYTES], mac_len=TAG_BYTES)
            cipher.update(context.encode("utf-8"))
            # ValueError when the tag does not match: the data, the key or the context differ
            plain = cipher.decrypt_and_verify(data[NONCE_BYTES:-TAG_BYTES], data[-TAG_BYTES:])
        except (binascii.Error, ValueError) as exc:
            raise DecryptionError("value does not decrypt (tampered, or stored for another owner)") from exc
        return plain.decode("utf-8")

    def needs_reencryption(self, value: str) -> bool:
        return is_encrypted(value) and _split(value)[0] != self.current_id


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def value_key_id(value: str) -> str:
    """The id of the key a stored value was encrypted with (DecryptionError when it is not in the format)."""
    return _split(value)[0]


def _split(value: str) -> tuple[str, str]:
    if not is_encrypted(value):
        raise DecryptionError("value is not in the ENC: format")
    kid, sep, blob = value[len(PREFIX) :].partition(":")
    if not sep or not kid:
        raise DecryptionError("value is not in the ENC:<key id>:<data> format")
    return kid, blob


def key_ring_from_secret(secret: Mapping[str, object]) -> KeyRing:
    """Build the ring from the Secrets Manager JSON: ``encryption_key`` and optional ``previous_keys``."""
    current = secret.get("encryption_key")
    if not isinstance(current, str) or not current:
        raise ConfigurationError("the secret has no 'encryption_key' field")
    previous_raw = secret.get("previous_keys") or []
    if isinstance(previous_raw, Mapping):
        previous_raw = list(previous_raw.values())
    if not isinstance(previous_raw, list):
        raise ConfigurationError("the secret's 'previous_keys' must be a list of keys")
    previous = tuple(parse_key(str(k), source="secret previous_keys") for k in previous_raw)
    return KeyRing(parse_key(current, source="secret encryption_key"), previous)


def key_ring_from_environment(environ: Mapping[str, str] | None = None, key_file: Path = KEY_FILE) -> KeyRing:
    """Local and container deployments: ``MAIL_PROXY_ENCRYPTION_KEY`` or the key file, nothing else."""
    env = os.environ if environ is None else environ
    previous = tuple(
        parse_key(k, source="MAIL_PROXY_PREVIOUS_KEYS")
        for k in env.get("MAIL_PROXY_PREVIOUS_KEYS", "").split(",")
        if k.strip()
    )
    value = env.get("MAIL_PROXY_ENCRYPTION_KEY", "").strip()
    if value:
        return KeyRing(parse_key(value, source="MAIL_PROXY_ENCRYPTION_KEY"), previous)
    if key_file.exists():
        return KeyRing(parse_key(key_file.read_bytes(), source=str(key_file)), previous)
    raise ConfigurationError(
        "no encryption key: set MAIL_PROXY_ENCRYPTION_KEY (base64 of 32 bytes), provide "
        f"{key_file}, or SECRET_ID in AWS; generate a key with `python -m mail_proxy keygen`"
    )
