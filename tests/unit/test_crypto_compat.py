"""The layer's crypto (pycryptodome) against ``cryptography``, which wrote every value and key stored so far.

``cryptography`` is no longer in the layer, but it stays in the dev virtualenv (moto needs it), so it serves
as the reference implementation: values encrypted by one decrypt with the other in both directions, keys
written by one load in the other, and signatures are byte for byte those of the reference (PKCS#1 v1.5 is
deterministic) and verify with dkimpy.
"""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.mail import dkim_signing
from mail_proxy.mail.dkim_signing import dns_value, generate_key, sign
from mail_proxy.security.crypto import NONCE_BYTES, PREFIX, DecryptionError, KeyRing, key_id

KEY = bytes(range(32))
RING = KeyRing(KEY)
# written by the cryptography-based code (AESGCM, nonce bytes 100..111, key bytes 0..31): a stored value
# from before the switch, which must decrypt forever
STORED_BEFORE = f"{PREFIX}7e6e6079:ZGVmZ2hpamtsbW5vO3aqFlSZlTpNEap6mpbhi1Y4WgGBJi64JQs="


def reference_encrypt(key: bytes, plaintext: str, context: str, nonce: bytes) -> str:
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
    return f"{PREFIX}{key_id(key)}:{base64.b64encode(nonce + sealed).decode('ascii')}"


def reference_decrypt(key: bytes, value: str, context: str) -> str:
    data = base64.b64decode(value.rsplit(":", 1)[1])
    return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], context.encode("utf-8")).decode("utf-8")


def test_a_value_stored_before_the_switch_still_decrypts() -> None:
    assert RING.decrypt(STORED_BEFORE, context="tenant:t1") == "smtp-päss"


def test_a_value_stored_before_the_switch_is_refused_for_another_owner() -> None:
    with pytest.raises(DecryptionError):
        RING.decrypt(STORED_BEFORE, context="tenant:t2")


@settings(max_examples=30, deadline=None)
@given(plaintext=st.text(max_size=200), context=st.text(max_size=60), nonce=st.binary(min_size=12, max_size=12))
def test_what_cryptography_encrypts_decrypts_here(plaintext: str, context: str, nonce: bytes) -> None:
    assert RING.decrypt(reference_encrypt(KEY, plaintext, context, nonce), context=context) == plaintext


@settings(max_examples=30, deadline=None)
@given(plaintext=st.text(max_size=200), context=st.text(max_size=60))
def test_what_is_encrypted_here_decrypts_with_cryptography(plaintext: str, context: str) -> None:
    value = RING.encrypt(plaintext, context=context)
    assert reference_decrypt(KEY, value, context) == plaintext
    with pytest.raises(InvalidTag):
        reference_decrypt(KEY, value, context + "x")


def test_the_same_key_nonce_and_context_give_the_same_bytes_as_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = bytes(range(100, 112))
    monkeypatch.setattr("mail_proxy.security.crypto.secrets.token_bytes", lambda n: nonce[:n])
    assert RING.encrypt("smtp-päss", context="tenant:t1") == STORED_BEFORE


@pytest.mark.parametrize("cut", [0, 1, 12, 27])
def test_a_value_shorter_than_a_nonce_and_a_tag_is_a_decryption_error(cut: int) -> None:
    data = b"\x00" * cut
    with pytest.raises(DecryptionError):
        RING.decrypt(f"{PREFIX}{RING.current_id}:{base64.b64encode(data).decode()}", context="c")


def test_a_flipped_tag_bit_is_a_decryption_error_like_invalid_tag() -> None:
    data = bytearray(base64.b64decode(STORED_BEFORE.rsplit(":", 1)[1]))
    data[-1] ^= 1
    with pytest.raises(DecryptionError):
        RING.decrypt(f"{PREFIX}{RING.current_id}:{base64.b64encode(bytes(data)).decode()}", context="tenant:t1")


# DKIM -------------------------------------------------------------------------------------------------------

REFERENCE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# a DKIM key as the cryptography-based generate_key stored it
REFERENCE_PEM = REFERENCE_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode("ascii")
REFERENCE_P = base64.b64encode(REFERENCE_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode("ascii")
MESSAGE = b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody  \r\n"


def _dkim_lookup(public_key: str):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.example.com."
        return dns_value(public_key).encode()
    return lookup


def test_a_generated_key_is_pkcs8_pem_that_cryptography_loads_and_p_is_its_der_subject_public_key_info() -> None:
    private, public = generate_key()
    assert private.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert private.rstrip("\n").endswith("-----END PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(private.encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.key_size == 2048
    assert loaded.private_numbers().public_numbers.e == 65537
    der = loaded.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64decode(public) == der


def test_a_key_stored_by_cryptography_signs_and_dkimpy_verifies_with_its_published_record() -> None:
    signed = sign(MESSAGE, domain="example.com", selector="sel", private_key=REFERENCE_PEM, timestamp=1_700_000_000)
    assert dkim.verify(signed, dnsfunc=_dkim_lookup(REFERENCE_P))
    assert not dkim.verify(signed.replace(b"body", b"bodY"), dnsfunc=_dkim_lookup(REFERENCE_P))


def test_a_generated_key_signs_and_dkimpy_verifies() -> None:
    private, public = generate_key()
    signed = sign(MESSAGE, domain="example.com", selector="sel", private_key=private, timestamp=1_700_000_000)
    assert dkim.verify(signed, dnsfunc=_dkim_lookup(public))


def test_signatures_are_byte_for_byte_those_of_cryptography() -> None:
    signed = sign(MESSAGE, domain="example.com", selector="sel", private_key=REFERENCE_PEM, timestamp=1_700_000_000)
    header = signed.split(b"\r\nFrom:", 1)[0].decode("ascii")
    b_tag = header.replace("\r\n\t", "").rsplit("b=", 1)[1].replace(" ", "")
    ours = base64.b64decode(b_tag)
    data = b"some data to sign"
    from Crypto.Hash import SHA256
    from Crypto.Signature import pkcs1_15

    pycryptodome = pkcs1_15.new(dkim_signing._load_key(REFERENCE_PEM)).sign(SHA256.new(data))
    assert pycryptodome == REFERENCE_KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())
    REFERENCE_KEY.public_key().verify(ours, _signed_data(signed), padding.PKCS1v15(), hashes.SHA256())


def _signed_data(signed: bytes) -> bytes:
    """What the DKIM signature covers, rebuilt from the output with the module's own canonicalisation."""
    fields, _body = dkim_signing._split(signed)
    header, rest = fields[0], fields[1:]
    _names, chosen = dkim_signing._chosen_fields(rest)
    unsigned = header[: header.rindex(b"b=") + 2]
    return b"".join(dkim_signing.relaxed_header(f) + b"\r\n" for f in chosen) + dkim_signing.relaxed_header(unsigned)


def test_a_pkcs1_pem_key_also_loads() -> None:
    pkcs1 = REFERENCE_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()).decode("ascii")
    signed = sign(MESSAGE, domain="example.com", selector="sel", private_key=pkcs1, timestamp=1_700_000_000)
    assert dkim.verify(signed, dnsfunc=_dkim_lookup(REFERENCE_P))


def _ec_pem() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.parametrize("pem", [
    pytest.param(_ec_pem(), id="ec-key"),
    pytest.param(REFERENCE_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
                 id="public-key"),
    pytest.param("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="garbage"),
    pytest.param("not a key", id="no-pem"),
])
def test_anything_but_an_rsa_private_key_is_a_value_error(pem: str) -> None:
    with pytest.raises(ValueError):
        sign(MESSAGE, domain="example.com", selector="sel", private_key=pem, timestamp=1)
