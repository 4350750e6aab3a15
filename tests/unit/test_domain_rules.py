"""Domain rules of tenants, accounts and messages (docs/design.md "HTTP contract"), without AWS."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mail_proxy.domain.account_models import AccountCreate
from mail_proxy.domain.message_models import MessageIn, describe_validation_error
from mail_proxy.domain.models import normalise_priority
from mail_proxy.domain.tenant_models import TenantCreate, TenantUpdate
from mail_proxy.mail.addresses import AddressError, parse_address_list, parse_mailbox


def msg(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "m1", "account_id": "smtp1", "from": "sender@example.com",
                            "to": ["rcpt@example.org"], "subject": "Hello"}
    base.update(overrides)
    return base


def rejection(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        MessageIn.model_validate(msg(**overrides))
    return describe_validation_error(raised.value)


def account(**overrides: Any) -> dict[str, Any]:
    return {"id": "smtp1", "host": "smtp.example.com", "port": 587, **overrides}


# ------------------------------------------------------------------------------------------ priority


@pytest.mark.parametrize(("label", "number"), [("immediate", 0), ("high", 1), ("medium", 2), ("low", 3),
                                               ("HIGH", 1), (0, 0), (3, 3), ("2", 2), (None, 2)])
def test_priority_label_or_number_maps_to_its_lane(label: Any, number: int) -> None:
    assert normalise_priority(label) == number


@pytest.mark.parametrize("bad", [4, -1, "urgent", "", True, 1.5, [1]])
def test_invalid_priority_is_an_error_not_clamped(bad: Any) -> None:
    with pytest.raises(ValueError, match="priority"):
        normalise_priority(bad)


# ------------------------------------------------------------------------------------------ messages


def test_minimal_message_is_valid_with_defaults() -> None:
    message = MessageIn.model_validate(msg())
    assert message.body == "" and message.content_type == "plain" and message.priority is None


def test_to_may_be_a_comma_separated_string() -> None:
    message = MessageIn.model_validate(msg(to="a@example.com, B <b@example.org>"))
    assert message.to == ["a@example.com", "B <b@example.org>"]


def test_payload_uses_from_and_leaves_out_tenant_id_and_priority() -> None:
    payload = MessageIn.model_validate(msg(tenant_id="acme", priority="high")).payload()
    assert payload["from"] == "sender@example.com"
    assert "from_" not in payload and "tenant_id" not in payload and "priority" not in payload


def test_unknown_field_is_named_in_the_reason() -> None:
    assert rejection(defered_ts=1) == "defered_ts: unknown field"


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ValidationError) as raised:
        MessageIn.model_validate({"id": "m1"})
    reason = describe_validation_error(raised.value)
    for name in ("account_id", "from", "subject"):
        assert f"{name}: field required" in reason


@pytest.mark.parametrize("field", ["from", "to", "cc", "bcc", "reply_to", "return_path"])
@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r"])
def test_line_break_in_an_address_field_is_rejected(field: str, line_break: str) -> None:
    value = f"a@example.com{line_break}Bcc: victim@example.net"
    reason = rejection(**{field: [value] if field in ("to", "cc", "bcc") else value})
    assert "line break" in reason and field in reason


@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r", "\x00"])
def test_line_break_in_the_subject_is_rejected(line_break: str) -> None:
    assert "subject contains a line break" in rejection(subject=f"Hi{line_break}Bcc: victim@example.net")


def test_line_break_in_a_custom_header_value_is_rejected() -> None:
    assert "line break" in rejection(headers={"X-Campaign": "spring\r\nBcc: victim@example.net"})


@pytest.mark.parametrize("name", ["X-Campaign\n", "X Campaign", "X-Campaign:", "", "X-\r\nBcc"])
def test_invalid_custom_header_name_is_rejected(name: str) -> None:
    assert "not a valid header field name" in rejection(headers={name: "v"})


@pytest.mark.parametrize("name", ["Bcc", "from", "Message-ID", "X-Mail-Proxy-ID", "x-mail-proxy-tag",
                                  "content-type"])
def test_header_the_proxy_sets_cannot_be_overridden(name: str) -> None:
    assert "set by the proxy" in rejection(headers={name: "x"})


def test_tab_in_a_header_value_is_allowed() -> None:
    assert MessageIn.model_validate(msg(subject="a\tb")).subject == "a\tb"


@pytest.mark.parametrize("address", ["plainaddress", "a@b", "a@@example.com", "a b@example.com", "@example.com",
                                     "a@-example.com", "a@example..com", "x" * 65 + "@example.com",
                                     "a@" + "b" * 250 + ".com", "a@example.com, not-an-address"])
def test_invalid_recipient_address_is_rejected(address: str) -> None:
    assert rejection(to=[address]).startswith("to")


def test_empty_recipient_list_is_rejected() -> None:
    assert "at least one recipient" in rejection(to=[])


def test_sender_with_display_name_is_accepted() -> None:
    assert MessageIn.model_validate(msg(**{"from": "Acme Shop <shop@example.com>"})).from_ == \
        "Acme Shop <shop@example.com>"


def test_two_senders_are_rejected() -> None:
    assert "exactly one" in rejection(**{"from": "a@example.com, b@example.com"})


def test_empty_subject_is_rejected() -> None:
    assert rejection(subject="").startswith("subject")


def test_id_of_128_characters_is_valid_and_129_is_not() -> None:
    assert MessageIn.model_validate(msg(id="x" * 128)).id == "x" * 128
    assert "id: must be 1-128" in rejection(id="x" * 129)


@pytest.mark.parametrize("bad_id", ["has space", "line\nbreak", "", "tab\tid"])
def test_id_must_be_printable_without_spaces(bad_id: str) -> None:
    assert "id: must be 1-128" in rejection(id=bad_id)


@pytest.mark.parametrize("value", ["tomorrow", "1700000000", True, 1.5, [1]])
def test_deferred_ts_must_be_integer_unix_seconds(value: Any) -> None:
    assert "deferred_ts" in rejection(deferred_ts=value)


def test_deferred_ts_given_as_whole_float_is_accepted() -> None:
    assert MessageIn.model_validate(msg(deferred_ts=1700000000.0)).deferred_ts == 1700000000


def test_invalid_priority_label_is_rejected_with_the_allowed_values() -> None:
    assert "immediate, high, medium, low" in rejection(priority="urgent")


def test_batch_code_longer_than_64_is_rejected() -> None:
    assert rejection(batch_code="b" * 65).startswith("batch_code")


# ------------------------------------------------------------------------------------------ addresses


def test_parse_mailbox_refuses_line_breaks_even_inside_a_display_name() -> None:
    with pytest.raises(AddressError, match="line break"):
        parse_mailbox("Evil\r\n Name <a@example.com>", field="from")


def test_parse_address_list_skips_blank_entries_and_keeps_names() -> None:
    assert parse_address_list(["", "A <a@example.com>", "b@example.org"], field="to") == \
        ["A <a@example.com>", "b@example.org"]


# ------------------------------------------------------------------------------------------ accounts


def test_port_25_is_rejected_naming_port_25_and_lambda() -> None:
    with pytest.raises(ValidationError) as raised:
        AccountCreate.model_validate(account(port=25))
    text = str(raised.value)
    assert "port 25" in text and "Lambda" in text


@pytest.mark.parametrize("host", ["smtp.example.com\n", "smtp.example.com\r\nX", "smtp example.com",
                                  "smtp.example.com/x", ""])
def test_invalid_smtp_host_is_rejected(host: str) -> None:
    with pytest.raises(ValidationError):
        AccountCreate.model_validate(account(host=host))


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.5", "[2001:db8::1]"])
def test_host_name_or_ip_is_accepted(host: str) -> None:
    assert AccountCreate.model_validate(account(host=host)).host == host


@pytest.mark.parametrize("field", ["user", "password"])
def test_line_break_in_account_credentials_is_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match="line break"):
        AccountCreate.model_validate(account(**{field: "x\r\nAUTH"}))


def test_account_id_of_129_characters_is_rejected() -> None:
    with pytest.raises(ValidationError):
        AccountCreate.model_validate(account(id="a" * 129))


@pytest.mark.parametrize(("fields", "mode"), [({"port": 587}, "starttls"), ({"port": 465}, "ssl"),
                                              ({"port": 2525, "tls": "none"}, "none"),
                                              ({"port": 2525, "use_tls": False}, "none"),
                                              ({"port": 587, "use_tls": True}, "starttls")])
def test_tls_mode_defaults_follow_the_port(fields: dict[str, Any], mode: str) -> None:
    assert AccountCreate.model_validate(account(**fields)).tls_mode() == mode


def test_account_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AccountCreate.model_validate(account(passwd="x"))


# ------------------------------------------------------------------------------------------ tenants


@pytest.mark.parametrize("tenant_id", ["a" * 65, "a#b", "a b", "a/b", "", "ü"])
def test_invalid_tenant_id_is_rejected(tenant_id: str) -> None:
    with pytest.raises(ValidationError):
        TenantCreate.model_validate({"tenant_id": tenant_id})


def test_tenant_id_of_64_allowed_characters_is_valid() -> None:
    assert TenantCreate.model_validate({"tenant_id": "A-z_0" + "x" * 59}).tenant_id.startswith("A-z_0")


@pytest.mark.parametrize("token", ["short", "has a space in it!!", "line\nbreak-0123456789", " lead-0123456789abc"])
def test_chosen_tenant_token_must_be_long_and_clean(token: str) -> None:
    with pytest.raises(ValidationError):
        TenantCreate.model_validate({"tenant_id": "acme", "token": token})


@pytest.mark.parametrize("auth", [{"method": "bearer"}, {"method": "basic", "user": "u"},
                                  {"method": "basic", "password": "p"}, {"method": "digest"},
                                  {"method": "bearer", "token": "t\r\nX"}])
def test_incomplete_or_unknown_client_auth_is_rejected(auth: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TenantCreate.model_validate({"tenant_id": "acme", "client_auth": auth})


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com", "https://", "https://a b.example.com"])
def test_client_base_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError):
        TenantCreate.model_validate({"tenant_id": "acme", "client_base_url": url})


def test_tenant_update_cannot_change_tenant_id_or_token() -> None:
    for field in ("tenant_id", "token"):
        with pytest.raises(ValidationError, match="extra"):
            TenantUpdate.model_validate({field: "x" * 20})
