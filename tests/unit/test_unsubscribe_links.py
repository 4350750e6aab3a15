"""Unsubscribe links: the signed token, which messages carry the headers, how the headers are built, what a
one-click POST body looks like, and which messages a list-scoped suppression blocks."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.api.unsubscribe_api import one_click_requested
from mail_proxy.domain.entities import Tenant
from mail_proxy.mail.mime import ListUnsubscribe, build_email, message_bytes
from mail_proxy.security.crypto import KeyRing
from mail_proxy.usecases.suppressions import suppression_applies
from mail_proxy.usecases.unsubscribe_links import (
    UnsubscribeLink,
    list_unsubscribe_for,
    make_token,
    read_token,
    wants_list_unsubscribe,
)

OLD, NEW, OTHER = bytes(range(32)), bytes(range(1, 33)), bytes(range(2, 34))
LINK = UnsubscribeLink("acme", "reader@example.org", "news", "m/1?#", 1_900_000_000)
PAYLOAD = {"from": "a@acme.example", "to": ["reader@example.org"], "subject": "Hi", "unsubscribe": True}


def test_a_token_reads_back_as_the_link_it_was_made_for() -> None:
    token = make_token(KeyRing(NEW), LINK)
    assert read_token(KeyRing(NEW), token) == LINK
    assert all(c.isalnum() or c in "-_." for c in token) and len(token) < 160


def test_a_token_made_before_a_key_rotation_still_reads_while_the_old_key_is_in_the_ring() -> None:
    token = make_token(KeyRing(OLD), LINK)
    assert read_token(KeyRing(NEW, (OLD,)), token) == LINK
    assert read_token(KeyRing(NEW), token) is None
    assert read_token(KeyRing(OTHER), make_token(KeyRing(NEW), LINK)) is None


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), char=st.sampled_from("A-_.x0é"))
def test_no_changed_character_makes_a_token_that_reads(position: int, char: str) -> None:
    token = make_token(KeyRing(NEW), LINK)
    index = position % len(token)
    forged = token[:index] + char + token[index + 1:]
    if forged != token:
        assert read_token(KeyRing(NEW), forged) is None


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "é.é", "x" * 5000])
def test_malformed_tokens_read_as_nothing(token: str) -> None:
    assert read_token(KeyRing(NEW), token) is None


@pytest.mark.parametrize(("tenant", "payload", "wanted"), [
    ({}, {}, False),
    ({}, {"unsubscribe": True}, True),
    ({"unsubscribe": {"default": True}}, {}, True),
    ({"unsubscribe": {"default": True}}, {"unsubscribe": False}, False),
    ({"unsubscribe": {"default": True}}, {"headers": {"list-unsubscribe": "<mailto:x@y.z>"}}, False),
    ({"unsubscribe": {"default": False, "mailto": "x@y.z"}}, {}, False),
])
def test_which_messages_want_the_headers(tenant: dict, payload: dict, wanted: bool) -> None:
    assert wants_list_unsubscribe(Tenant("acme", unsubscribe=tenant.get("unsubscribe")), payload) is wanted


def headers_for(tenant: dict, payload: dict, public_url: str | None = "https://api.example") -> ListUnsubscribe | None:
    return list_unsubscribe_for(Tenant("acme", unsubscribe=tenant.get("unsubscribe")), "m1", payload,
                                public_url=public_url, ring=KeyRing(NEW), now=1_000)


def test_the_link_names_the_recipient_the_list_when_scoped_and_the_message() -> None:
    scoped = headers_for({"unsubscribe": {"per_batch": True}}, {**PAYLOAD, "batch_code": "news"})
    assert scoped is not None and scoped.one_click
    [uri] = scoped.uris
    link = read_token(KeyRing(NEW), uri.removeprefix("https://api.example/unsubscribe/"))
    assert link == UnsubscribeLink("acme", "reader@example.org", "news", "m1", 1_000 + 365 * 86400)
    unscoped = headers_for({}, {**PAYLOAD, "batch_code": "news"})
    assert unscoped is not None
    assert read_token(KeyRing(NEW), unscoped.uris[0].rpartition("/")[2]).list_id is None  # type: ignore[union-attr]


def test_no_link_for_several_recipients_and_mailto_alone_is_not_one_click() -> None:
    assert headers_for({}, {**PAYLOAD, "to": ["a@example.org", "b@example.org"]}) is None
    assert headers_for({}, PAYLOAD, public_url=None) is None
    mailto = headers_for({"unsubscribe": {"mailto": "leave+x@acme.example"}}, PAYLOAD, public_url=None)
    assert mailto == ListUnsubscribe(("mailto:leave+x@acme.example?subject=unsubscribe",), one_click=False)


def test_a_link_too_long_for_a_header_line_is_left_out_and_the_message_still_builds() -> None:
    huge = {**PAYLOAD, "to": ["a" * 64 + "@" + ("d" * 60 + ".") * 3 + "ex"]}  # 250 characters
    long_id = '"\\' * 64  # 128 characters, each escaped in the token
    assert headers_for({}, huge) is not None  # a long but fitting link
    unsubscribe = list_unsubscribe_for(Tenant("t" * 64, unsubscribe={"mailto": "u@acme.example", "per_batch": True}),
                                       long_id, {**huge, "batch_code": "b" * 64},
                                       public_url="https://api.example", ring=KeyRing(NEW), now=1_000)
    assert unsubscribe == ListUnsubscribe(("mailto:u@acme.example?subject=unsubscribe",), one_click=False)
    build_email(huge, tenant_id="t", message_id="m1", list_unsubscribe=unsubscribe)


def test_the_built_message_carries_both_headers_and_not_the_payloads_own() -> None:
    uri = "https://api.example/unsubscribe/" + "t" * 700
    payload = {**PAYLOAD, "headers": {"List-Unsubscribe": "<https://old.example>", "X-Campaign": "c1"}}
    data = message_bytes(build_email(payload, tenant_id="acme", message_id="m1",
                                     list_unsubscribe=ListUnsubscribe((uri, "mailto:u@acme.example"))))
    mail = message_from_bytes(data)
    assert mail.get_all("List-Unsubscribe") == [f"<{uri}>,\r\n <mailto:u@acme.example>"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and mail["X-Campaign"] == "c1"
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


@pytest.mark.parametrize(("content_type", "body", "requested"), [
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click", True),
    ("application/x-www-form-urlencoded; charset=utf-8", b"a=b&List-Unsubscribe=One-Click", True),
    ("", b"List-Unsubscribe=One-Click", True),
    ("application/x-www-form-urlencoded", b"", False),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=one-click", False),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n', True),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="Other"\r\n\r\nOne-Click\r\n--b--\r\n', False),
    ("multipart/form-data; boundary=b", b"\xff\xfe garbage", False),
])
def test_a_one_click_post_is_recognised_by_its_form_field(content_type: str, body: bytes, requested: bool) -> None:
    assert one_click_requested(content_type, body) is requested


@pytest.mark.parametrize(("entry", "batch_code", "blocked"), [
    (None, "news", False),
    ({"address": "a@b.c"}, None, True),
    ({"address": "a@b.c"}, "news", True),
    ({"address": "a@b.c", "lists": {"news"}}, "news", True),
    ({"address": "a@b.c", "lists": {"news"}}, "offers", False),
    ({"address": "a@b.c", "lists": {"news"}}, None, False),
])
def test_a_list_scoped_suppression_blocks_only_its_lists(entry: dict | None, batch_code: str | None,
                                                         blocked: bool) -> None:
    assert suppression_applies(entry, batch_code) is blocked
