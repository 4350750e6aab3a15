"""The X-Mail-Proxy-Tag: made only with the proxy's key, for one message, still valid after a rotation."""

from __future__ import annotations

import email
import email.policy

from mail_proxy.mail.inbound_mail import find_reference, parse
from mail_proxy.security.crypto import KeyRing
from mail_proxy.security.proxy_tags import make_tag, tag_is_valid
from tests.fixtures import returned_mail

KEY_A = bytes(range(32))
KEY_B = bytes(range(200, 232))


def test_a_tag_is_32_lowercase_base32_characters_and_verifies_for_its_message_only() -> None:
    ring = KeyRing(KEY_A)
    tag = make_tag(ring, "acme", "m1")
    assert len(tag) == 32 and tag == tag.lower() and set(tag) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert tag_is_valid(ring, "acme", "m1", tag)
    assert tag_is_valid(ring, "acme", "m1", tag.upper())  # header values may be case-folded on the way
    assert not tag_is_valid(ring, "acme", "m2", tag)
    assert not tag_is_valid(ring, "beta", "m1", tag)
    assert not tag_is_valid(ring, "acme", "m1", None)
    assert not tag_is_valid(ring, "acme", "m1", "")
    assert not tag_is_valid(ring, "acme", "m1", "é" * 32)  # non-ASCII text is a forgery, not an error


def test_a_tag_made_before_a_key_rotation_verifies_while_the_old_key_is_in_the_ring() -> None:
    old = make_tag(KeyRing(KEY_A), "acme", "m1")
    assert tag_is_valid(KeyRing(KEY_B, (KEY_A,)), "acme", "m1", old)
    assert not tag_is_valid(KeyRing(KEY_B), "acme", "m1", old)  # the old key dropped: the tag no longer proves
    assert make_tag(KeyRing(KEY_B, (KEY_A,)), "acme", "m1") != old  # new mail is tagged with the new key


def test_the_tag_is_read_from_the_same_returned_headers_as_the_reference() -> None:
    for returned in ("message", "headers"):
        ref = find_reference(parse(returned_mail.dsn("acme", "m1", returned=returned)))
        assert ref is not None and ref.tag == returned_mail.tag_for("acme", "m1")
        untagged = find_reference(parse(returned_mail.dsn("acme", "m1", returned=returned, tag=None)))
        assert untagged is not None and untagged.tag is None


def test_the_tag_is_read_from_the_same_text_as_a_quoted_reference() -> None:
    ref = find_reference(parse(returned_mail.plain_bounce("acme", "m1")))
    assert ref is not None and ref.tag == returned_mail.tag_for("acme", "m1")


def test_a_tag_in_the_reports_own_headers_does_not_vouch_for_the_returned_copy() -> None:
    """The forger writes the outer headers; only the tag next to the reference counts."""
    raw = returned_mail.dsn("acme", "m2", tag=None)
    outer = email.message_from_bytes(raw, policy=email.policy.compat32)
    outer["X-Mail-Proxy-Tag"] = returned_mail.tag_for("acme", "m2")
    ref = find_reference(parse(outer.as_bytes()))
    assert ref is not None and ref.message_id == "m2" and ref.tag is None
