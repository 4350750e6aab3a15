"""AES-256-GCM for stored secrets (docs/design.md "Security"): format, nonces, associated data, keys, rotation."""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mail_proxy.errors import ConfigurationError
from mail_proxy.security.crypto import (
    NONCE_BYTES,
    PREFIX,
    DecryptionError,
    KeyRing,
    generate_key,
    key_id,
    key_ring_from_environment,
    key_ring_from_secret,
    parse_key,
)
from mail_proxy.usecases.accounts import password_context

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
TAG_BYTES = 16
CONTEXT = password_context("acme", "smtp1")
SECRET = "s3cret-päss-word"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def blob_of(value: str) -> bytes:
    return base64.b64decode(value.rsplit(":", 1)[1])


def with_blob(value: str, blob: bytes) -> str:
    return value.rsplit(":", 1)[0] + ":" + base64.b64encode(blob).decode()


def missing_file(tmp_path: Path) -> Path:
    return tmp_path / "no-such-key-file"


# ------------------------------------------------------------------------------------------ encryption


def test_encrypt_then_decrypt_returns_the_plaintext() -> None:
    ring = KeyRing(KEY_A)
    assert ring.decrypt(ring.encrypt(SECRET, context=CONTEXT), context=CONTEXT) == SECRET


def test_empty_plaintext_round_trips() -> None:
    ring = KeyRing(KEY_A)
    assert ring.decrypt(ring.encrypt("", context=CONTEXT), context=CONTEXT) == ""


def test_stored_value_is_enc_prefix_key_id_and_nonce_ciphertext_tag() -> None:
    ring = KeyRing(KEY_A)
    value = ring.encrypt(SECRET, context=CONTEXT)
    prefix, kid, _blob = value.split(":")
    assert prefix + ":" == PREFIX
    assert kid == key_id(KEY_A) == ring.current_id
    assert len(blob_of(value)) == 12 + len(SECRET.encode()) + TAG_BYTES  # 96-bit nonce, 128-bit tag


def test_stored_value_does_not_contain_the_plaintext() -> None:
    value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    assert SECRET not in value
    assert SECRET.encode() not in blob_of(value)


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = KeyRing(KEY_A)
    values = [ring.encrypt(SECRET, context=CONTEXT) for _ in range(64)]
    nonces = {blob_of(v)[:NONCE_BYTES] for v in values}
    assert len(nonces) == len(values)
    assert len(set(values)) == len(values)


@pytest.mark.parametrize(
    "other_context",
    [
        password_context("other", "smtp1"),
        password_context("acme", "smtp2"),
        "tenant:acme:client_auth:password",
        "",
    ],
    ids=["another-tenant", "another-account", "another-field", "no-context"],
)
def test_value_bound_to_its_owner_does_not_decrypt_for_another(other_context: str) -> None:
    ring = KeyRing(KEY_A)
    value = ring.encrypt(SECRET, context=CONTEXT)
    with pytest.raises(DecryptionError):
        ring.decrypt(value, context=other_context)


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, -TAG_BYTES - 1, -1],
                         ids=["nonce-first", "nonce-last", "ciphertext-first", "ciphertext-last", "tag-last"])
def test_tampered_value_is_detected(position: int) -> None:
    ring = KeyRing(KEY_A)
    value = ring.encrypt(SECRET, context=CONTEXT)
    blob = bytearray(blob_of(value))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.decrypt(with_blob(value, bytes(blob)), context=CONTEXT)


def test_truncated_value_is_detected() -> None:
    ring = KeyRing(KEY_A)
    value = ring.encrypt(SECRET, context=CONTEXT)
    with pytest.raises(DecryptionError):
        ring.decrypt(with_blob(value, blob_of(value)[:-1]), context=CONTEXT)


def test_value_under_an_unknown_key_id_is_refused() -> None:
    value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    with pytest.raises(DecryptionError, match="unknown key id"):
        KeyRing(KEY_B).decrypt(value, context=CONTEXT)


@pytest.mark.parametrize("value", ["hunter2", "ENC:", "ENC:abc", "ENC::AAAA", "ENC:deadbeef:!!notbase64!!"])
def test_value_not_in_enc_format_is_refused_never_returned_as_plaintext(value: str) -> None:
    ring = KeyRing(KEY_A)
    with pytest.raises(DecryptionError):
        ring.decrypt(value, context=CONTEXT)


def test_key_ring_repr_does_not_show_the_key() -> None:
    text = repr(KeyRing(KEY_A, (KEY_B,)))
    for key in (KEY_A, KEY_B):
        assert b64(key) not in text and key.hex() not in text and repr(key) not in text


# ------------------------------------------------------------------------------------------ keys


def test_base64_key_is_accepted() -> None:
    assert parse_key(b64(KEY_A), source="test") == KEY_A


def test_64_hex_key_is_accepted_and_is_the_same_key_as_its_base64() -> None:
    key = parse_key(KEY_A.hex(), source="test")
    assert key == KEY_A
    assert key_id(key) == key_id(parse_key(b64(KEY_A), source="test"))


def test_raw_32_byte_key_file_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption_key"
    key_file.write_bytes(KEY_B)
    ring = key_ring_from_environment({}, key_file=key_file)
    assert ring.current == KEY_B


def test_key_file_holding_base64_text_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption_key"
    key_file.write_text(b64(KEY_B) + "\n")
    assert key_ring_from_environment({}, key_file=key_file).current == KEY_B


def test_environment_key_wins_over_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption_key"
    key_file.write_bytes(KEY_B)
    ring = key_ring_from_environment({"MAIL_PROXY_ENCRYPTION_KEY": b64(KEY_A)}, key_file=key_file)
    assert ring.current == KEY_A


def test_missing_key_is_a_configuration_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_PROXY_ENCRYPTION_KEY"):
        key_ring_from_environment({}, key_file=missing_file(tmp_path))


def test_blank_key_variable_is_a_configuration_error_not_a_plaintext_fallback(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_PROXY_ENCRYPTION_KEY"):
        key_ring_from_environment({"MAIL_PROXY_ENCRYPTION_KEY": "   "}, key_file=missing_file(tmp_path))


@pytest.mark.parametrize(
    "value",
    [
        "not-a-key",
        b64(bytes(16)),
        b64(bytes(33)),
        KEY_A.hex()[:-2],
        "z" * 64,
        b64(KEY_A)[:-4],
    ],
    ids=["garbage", "16-bytes", "33-bytes", "62-hex", "64-non-hex", "truncated-base64"],
)
def test_malformed_key_is_a_configuration_error(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_PROXY_ENCRYPTION_KEY") as raised:
        key_ring_from_environment({"MAIL_PROXY_ENCRYPTION_KEY": value}, key_file=missing_file(tmp_path))
    assert value not in str(raised.value)


def test_malformed_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption_key"
    key_file.write_bytes(bytes(31))
    with pytest.raises(ConfigurationError, match="malformed"):
        key_ring_from_environment({}, key_file=key_file)


def test_malformed_previous_key_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_ENCRYPTION_KEY": b64(KEY_A), "MAIL_PROXY_PREVIOUS_KEYS": "nope"}
    with pytest.raises(ConfigurationError, match="MAIL_PROXY_PREVIOUS_KEYS"):
        key_ring_from_environment(env, key_file=missing_file(tmp_path))


def test_secret_without_encryption_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="encryption_key"):
        key_ring_from_secret({"previous_keys": [b64(KEY_A)]})


def test_secret_with_hex_key_and_previous_keys_builds_the_ring() -> None:
    ring = key_ring_from_secret({"encryption_key": KEY_B.hex(), "previous_keys": [b64(KEY_A)]})
    assert ring.current == KEY_B and ring.previous == (KEY_A,)


# ------------------------------------------------------------------------------------------ rotation


def test_value_under_an_old_key_decrypts_while_that_key_is_a_previous_key() -> None:
    old_value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    assert KeyRing(KEY_B, (KEY_A,)).decrypt(old_value, context=CONTEXT) == SECRET


def test_value_under_an_old_key_no_longer_decrypts_once_the_key_is_dropped() -> None:
    old_value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    with pytest.raises(DecryptionError):
        KeyRing(KEY_B).decrypt(old_value, context=CONTEXT)


def test_new_values_are_written_under_the_current_key_only() -> None:
    ring = KeyRing(KEY_B, (KEY_A,))
    new_value = ring.encrypt(SECRET, context=CONTEXT)
    old_value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    assert new_value.split(":")[1] == key_id(KEY_B)
    assert not ring.needs_reencryption(new_value)
    assert ring.needs_reencryption(old_value)


def test_previous_keys_come_from_mail_proxy_previous_keys(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_ENCRYPTION_KEY": b64(KEY_B), "MAIL_PROXY_PREVIOUS_KEYS": f"{b64(KEY_A)}, {KEY_B.hex()}"}
    ring = key_ring_from_environment(env, key_file=missing_file(tmp_path))
    old_value = KeyRing(KEY_A).encrypt(SECRET, context=CONTEXT)
    assert ring.decrypt(old_value, context=CONTEXT) == SECRET


# ------------------------------------------------------------------------------------------ keygen


def test_generate_key_is_base64_of_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert first != second


def test_keygen_command_prints_a_base64_32_byte_key() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "mail_proxy")}
    done = subprocess.run([sys.executable, "-m", "mail_proxy", "keygen"], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    try:
        key = base64.b64decode(printed, validate=True)
    except binascii.Error:
        pytest.fail(f"keygen printed something that is not base64: {printed!r}")
    assert len(key) == 32
    assert parse_key(printed, source="keygen") == key
