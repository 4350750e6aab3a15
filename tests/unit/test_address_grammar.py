"""One address grammar (mail_proxy.mail.addresses): what the API accepts is what the renderer (mime) sends and
what the address guard reads as written; what the API refuses is refused with the field named.

A mailbox address: a dot-atom local part (ASCII or UTF-8), no quoted local part; a domain of two labels or
more (IDNA-encoded when international), no address literal (``[127.0.0.1]``) and no single label
(``localhost``). A host the proxy connects to (SMTP relay, IMAP server): a name of letters, digits and hyphens
(``localhost`` included: the guard reads it as loopback) or an IP address, IPv6 in brackets.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mail_proxy.domain.account_models import AccountCreate
from mail_proxy.domain.message_models import MessageIn, describe_validation_error
from mail_proxy.domain.tenant_models import SuppressionCreate
from mail_proxy.mail.addresses import AddressError, check_addr_spec, check_host
from mail_proxy.mail.mime import build_email
from mail_proxy.mail.mime_addresses import envelope_recipients, parse_mailboxes
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.security.address_guard import AddressPolicy, HostNotAllowed, connect_name, literal_address

BASE: dict[str, Any] = {"id": "m1", "account_id": "smtp1", "from": "shop@example.com", "subject": "Hi"}

LOCAL = st.sampled_from(["jo", "jo.smith", "j+tag", "jürgen", '"jo smith"', '"a\\"b"', "a..b", ".a", "ä" * 33,
                         "x" * 64, "x" * 65, "", "a b", "o'neil", "a@b"])
DOMAIN = st.sampled_from(["example.org", "exämple.org", "localhost", "[127.0.0.1]", "[IPv6:::1]", "a.b.c.d", "ex",
                          "-ex.org", "ex-.org", "ex..org", "xn--exmple-cua.org", "e" * 64 + ".org", "mail.localhost",
                          "123.45.67.89", "", "example.org."])
ADDR_SPEC = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
MAILBOX = st.one_of(ADDR_SPEC, st.builds(lambda name, addr: f"{name} <{addr}>",
                                         st.sampled_from(["Jo", '"Smith, Jo"', "Jürgen", "Jo (Sales)"]), ADDR_SPEC))


def api_addr_spec(address: str) -> str | None:
    try:
        return check_addr_spec(address, field="to")
    except AddressError:
        return None


def rendered_addr_spec(address: str) -> str | None:
    try:
        [mailbox] = parse_mailboxes(address, field="to")
    except MalformedMessageError:
        return None
    return mailbox.addr_spec


@settings(max_examples=200, deadline=None)
@given(address=ADDR_SPEC)
@example('"jo smith"@example.org')
@example("jo@[127.0.0.1]")
@example("jo@localhost")
def test_the_api_and_the_renderer_accept_the_same_addresses(address: str) -> None:
    assert api_addr_spec(address) == rendered_addr_spec(address), address


@settings(max_examples=200, deadline=None)
@given(mailbox=MAILBOX)
def test_every_recipient_the_api_accepts_renders_and_every_one_it_refuses_names_its_field(mailbox: str) -> None:
    try:
        payload = MessageIn.model_validate({**BASE, "to": [mailbox]}).payload()
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        assert reason.startswith("to: ") and ("e-mail address" in reason or "address list" in reason), reason
        return
    build_email(payload, tenant_id="t", message_id="m1")
    [recipient] = envelope_recipients(payload)
    assert check_addr_spec(recipient, field="to") == recipient


@pytest.mark.parametrize("address", ['"jo smith"@example.org', "jo@[127.0.0.1]", "jo@localhost"])
def test_an_address_outside_the_grammar_is_refused_where_it_is_saved(address: str) -> None:
    with pytest.raises(ValidationError, match="not a valid e-mail address"):
        SuppressionCreate(address=address)
    with pytest.raises(MalformedMessageError, match="not a valid e-mail address"):
        build_email({**BASE, "to": [address]}, tenant_id="t", message_id="m1")


# ---------------------------------------------------------------------------------------------------- hosts

HOST_TEXT = st.one_of(
    st.lists(st.sampled_from([*"ab0-.:[]x", "localhost", "::1", "127.0.0.1", "0x7f", "1.2.3", "ä"]),
             min_size=1, max_size=8).map("".join),
    st.sampled_from(["smtp.example.com", "relay", "smtp.example.com.", "[::1]", "[127.0.0.1]", "[1.2.3]", "[.]",
                     "[::1:]", "::1", "2001:db8::1", "-relay", "relay-", "a..b", ".", "0x7f.1", "2130706433",
                     "e" * 64 + ".com", "[fe80::1%eth0]", "smtp_relay"]),
)


def resolvable_name(host: str) -> bool:
    """What a resolver is asked for without surprise: labels of 1-63 ASCII letters, digits and inner hyphens."""
    labels = host.removesuffix(".").split(".")
    return all(0 < len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()
               and not label.startswith("-") and not label.endswith("-") for label in labels)


def accepted_host(host: str) -> bool:
    try:
        AccountCreate(id="smtp1", host=host, port=587)
    except ValidationError as exc:
        assert describe_validation_error(exc).startswith("host"), exc
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(host=HOST_TEXT)
@example("[.]")
@example("a..b")
@example("-relay")
def test_a_relay_host_the_api_accepts_is_one_the_guard_reads_as_written(host: str) -> None:
    if not accepted_host(host):
        return
    if host.startswith("["):
        assert literal_address(host) == ipaddress.ip_address(host[1:-1].split("%")[0])
    else:
        assert connect_name(host) == host and resolvable_name(host), host


@pytest.mark.parametrize("host", ["localhost", "LocalHost.", "mail.localhost"])
def test_localhost_is_loopback_and_refused_where_it_is_saved_unless_loopback_is_allowed(host: str) -> None:
    with pytest.raises(HostNotAllowed):
        AddressPolicy().check_literal(host)
    AddressPolicy(allow_loopback=True).check_literal(host)
    assert check_host(host, field="host") == host


def test_a_name_that_merely_contains_localhost_is_a_name() -> None:
    AddressPolicy().check_literal("localhost.example.com")
    AddressPolicy().check_literal("mylocalhost")
