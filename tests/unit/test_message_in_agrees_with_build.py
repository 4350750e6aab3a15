"""What the API accepts in a message, the sender can build: MessageIn and mime.build_email agree on headers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mail_proxy.domain.message_models import MessageIn
from mail_proxy.mail.mime import build_email
from mail_proxy.mail.mime_headers import MalformedMessageError

BASE = {"id": "m1", "account_id": "smtp1", "from": "a@example.com", "to": ["b@example.org"], "subject": "Hi"}
NAMES = ["X-Campaign", "List-Unsubscribe", "Content-Type", "content-disposition", "Content-X", "MIME-Version",
         "Mime-Version", "Content-Transfer-Encoding", "Bcc", "BCC", "Message-ID", "Date", "X-Mail-Proxy-ID",
         "Return-Path", "Reply-To", "Sender", "From", "Keywords", "X-A"]


def accepted(fields: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return MessageIn.model_validate({**BASE, **fields}).payload()
    except ValidationError:
        return None


def builds(payload: dict[str, Any]) -> bool:
    try:
        build_email(payload, tenant_id="t", message_id="m1")
    except MalformedMessageError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(NAMES),
       value=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x24FF), max_size=40),
                       st.integers(min_value=990, max_value=1000).map(lambda n: "w" * n)))
def test_a_custom_header_the_api_accepts_is_one_the_sender_can_build(name: str, value: str) -> None:
    payload = accepted({"headers": {name: value}})
    if payload is not None:
        assert builds(payload), (name, value)


@settings(max_examples=150, deadline=None)
@given(message_id=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
                            st.integers(min_value=980, max_value=998).map(lambda n: "<" + "l" * (n - 12) + "@x.y>")))
def test_a_message_id_the_api_accepts_is_one_the_sender_can_build(message_id: str) -> None:
    payload = accepted({"message_id": message_id})
    if payload is not None:
        assert builds(payload), message_id


@pytest.mark.parametrize("subject", ["s" * 989, "s" * 990, "word " * 190])
def test_a_subject_the_api_accepts_is_one_the_sender_can_build(subject: str) -> None:
    payload = accepted({"subject": subject})
    if payload is not None:
        assert builds(payload)


@pytest.mark.parametrize("name", ["Content-Language", "MIME-Version", "Content-Transfer-Encoding", "Bcc"])
def test_a_header_the_proxy_builds_is_refused_with_its_name(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        MessageIn.model_validate({**BASE, "headers": {name: "x"}})


def test_html_body_with_an_html_content_type_is_refused_at_submission() -> None:
    assert accepted({"content_type": "html", "body": "<p>x</p>", "html_body": "<p>y</p>"}) is None
    assert accepted({"content_type": "plain", "body": "x", "html_body": "<p>y</p>"}) is not None
