"""The DKIM signer against an independent verifier (dkimpy): canonicalisation edge cases and random messages."""

from __future__ import annotations

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.mail.dkim_signing import dns_value, generate_key, relaxed_body, relaxed_header, sign

KEY = generate_key()  # one key for the module: generating one costs tens of milliseconds


def lookup(name: bytes, timeout: int = 5) -> bytes:
    assert name == b"sel._domainkey.example.com."
    return dns_value(KEY[1]).encode()


def signed(message: bytes) -> bytes:
    return sign(message, domain="example.com", selector="sel", private_key=KEY[0], timestamp=1_700_000_000)


HEAD = b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: hi\r\n"


@pytest.mark.parametrize("body", [b"", b"no final line end", b"\r\n\r\n", b"trailing  \t \r\nspaces\r\n\r\n\r\n",
                                  b"." * 990 + b"\r\n"])
def test_bodies_that_canonicalisation_treats_specially_verify(body: bytes) -> None:
    assert dkim.verify(signed(HEAD + b"\r\n" + body), dnsfunc=lookup)


def test_repeated_and_folded_headers_verify_and_a_dropped_one_fails() -> None:
    message = (b"From: a@example.com\r\nTo: one@example.org\r\nTo: two@example.org,\r\n\t three@example.org\r\n"
               b"Subject: a  long\r\n   folded subject\r\n\r\nbody\r\n")
    result = signed(message)
    assert dkim.verify(result, dnsfunc=lookup)
    assert not dkim.verify(result.replace(b"To: one@example.org\r\n", b""), dnsfunc=lookup)


def test_a_body_without_a_final_crlf_is_signed_as_smtp_will_send_it() -> None:
    for body in (b" ", b"a ", b"a\r\nb  "):
        message = HEAD + b"\r\n" + body
        sent = signed(message)
        assert sent.endswith(message + b"\r\n") and dkim.verify(sent, dnsfunc=lookup), body


def test_relaxed_forms_follow_rfc_6376() -> None:
    assert relaxed_header(b"SUBJECT :  a \r\n\t b  ") == b"subject:a b"
    assert relaxed_body(b"a  \t b \r\n\r\n\r\n") == b"a b\r\n"
    assert relaxed_body(b"\r\n\r\n") == b""


@settings(max_examples=25, deadline=None)
@given(subject=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
       body=st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80), max_size=8))
def test_random_printable_messages_verify(subject: str, body: list[str]) -> None:
    message = HEAD.replace(b"Subject: hi", b"Subject: " + subject.encode()) + b"\r\n" + "\r\n".join(body).encode()
    assert dkim.verify(signed(message), dnsfunc=lookup)
