"""Settings per function: each function reads what it uses, by the template's variable names, and a wrong value
stops the function at start with a message naming the variable and what it expects."""

from __future__ import annotations

import pytest

from local.template import load_template
from mail_proxy.errors import ConfigurationError
from mail_proxy.settings import (
    ApiSettings,
    AuthorizerSettings,
    BouncePollerSettings,
    FunctionSettings,
    ReporterSettings,
    ReportRouterSettings,
    SchedulerSettings,
    SenderSettings,
    Settings,
    get_settings,
    reset_settings,
    settings_scope,
)

FUNCTIONS: dict[str, type[FunctionSettings]] = {
    "AuthorizerFunction": AuthorizerSettings,
    "ApiFunction": ApiSettings,
    "SenderFunction": SenderSettings,
    "SchedulerFunction": SchedulerSettings,
    "ReportRouterFunction": ReportRouterSettings,
    "ReporterFunction": ReporterSettings,
    "BouncePollerFunction": BouncePollerSettings,
}


def variables(kind: type[FunctionSettings]) -> set[str]:
    return {field.alias or name for name, field in kind.model_fields.items()}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in variables(Settings):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TABLE_NAME", "mail")
    reset_settings()


def failure(kind: type[FunctionSettings], monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        kind.from_env()
    return str(raised.value)


def test_a_body_limit_that_is_not_a_number_names_the_variable_and_the_form_expected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = failure(ApiSettings, monkeypatch, "MAX_BODY_BYTES", "5MB")
    assert message.startswith("environment variable MAX_BODY_BYTES:")
    assert "a whole number of bytes" in message and "'5MB'" in message


@pytest.mark.parametrize(("kind", "name", "value", "expected"), [
    (ApiSettings, "MAX_BODY_BYTES", "0", "more than 0"),
    (ApiSettings, "MAIL_PROXY_SUPPRESSION_DAYS", "0", "at least 1"),
    (ApiSettings, "METRICS_PUBLIC", "sometimes", "true or false"),
    (SenderSettings, "SMTP_TIMEOUT_SECONDS", "twenty", "seconds"),
    (SenderSettings, "MAIL_PROXY_ALLOW_LOOPBACK", "maybe", "true or false"),
    (SenderSettings, "MAIL_PROXY_RETRY_DELAYS", "60,5m", "comma-separated list"),
    (ReporterSettings, "MAIL_PROXY_REPORT_BACKOFF_SECONDS", "-1", "non-negative whole seconds"),
    (BouncePollerSettings, "MAIL_PROXY_PEC_ACCEPTANCE_TIMEOUT_SECONDS", "30", "at least 60"),
    (BouncePollerSettings, "MAIL_PROXY_ALLOWED_RELAY_NETWORKS", "10.20.0.1/16", "CIDR form"),
    (FunctionSettings, "MAIL_PROXY_SECRET_MAX_AGE_SECONDS", "7200", "0 to 3600"),
])
def test_a_wrong_value_fails_at_start_naming_its_variable(
        monkeypatch: pytest.MonkeyPatch, kind: type[FunctionSettings], name: str, value: str, expected: str) -> None:
    message = failure(kind, monkeypatch, name, value)
    assert f"environment variable {name}" in message and expected in message


def test_a_missing_table_name_is_named_with_what_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME")
    with pytest.raises(ConfigurationError, match=r"^environment variable TABLE_NAME is not set \(the DynamoDB table"):
        get_settings(SchedulerSettings)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "")
    monkeypatch.setenv("SECRET_ID", "")
    settings = ApiSettings.from_env()
    assert settings.max_body_bytes == 5 * 1024 * 1024 and settings.secret_id is None


def test_a_setting_is_read_only_from_its_template_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_MAX_AGE", "7")  # the field's own name, not the variable's
    monkeypatch.setenv("smtp_timeout", "3")
    settings = SenderSettings.from_env()
    assert settings.secret_max_age == 300 and settings.smtp_timeout == 20
    monkeypatch.setenv("mail_proxy_secret_max_age_seconds", "7")  # the variable in another case
    assert SenderSettings.from_env().secret_max_age == 300
    monkeypatch.setenv("MAIL_PROXY_SECRET_MAX_AGE_SECONDS", "7")
    assert SenderSettings.from_env().secret_max_age == 7


def test_a_function_never_fails_on_a_variable_it_does_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "5MB")  # the API's, wrong
    assert SenderSettings.from_env().table_name == "mail"


def test_the_send_queues_are_keyed_by_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEND_QUEUE_IMMEDIATE_URL", "q0")
    monkeypatch.setenv("SEND_QUEUE_LOW_URL", "q3")
    assert get_settings(SchedulerSettings).send_queue_urls == {0: "q0", 3: "q3"}


def test_get_settings_without_a_class_has_every_function_s_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAP_TIMEOUT_SECONDS", "3")
    settings = get_settings()
    assert settings.imap_timeout == 3 and settings.max_body_bytes == 5 * 1024 * 1024 and settings.table_name == "mail"


def test_settings_are_read_once_per_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    with settings_scope("SenderFunction"):
        first = get_settings(SenderSettings)
        monkeypatch.setenv("TABLE_NAME", "other")
        assert get_settings(SenderSettings) is first
    with settings_scope("ApiFunction"):
        assert get_settings(ApiSettings).table_name == "other"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_variable_the_template_gives_a_function_is_one_its_settings_read(logical_id: str) -> None:
    """The names stay the template's: a variable of the template that some settings read is read by the
    settings of each function the template gives it to (Globals aside: every function gets those)."""
    template = load_template()
    known = variables(Settings)
    globals_ = set.intersection(*(template.function_variable_names(f) for f in FUNCTIONS))
    given = (template.function_variable_names(logical_id) - globals_) & known
    assert given <= variables(FUNCTIONS[logical_id])
    assert {"TABLE_NAME", "SECRET_ID"} <= globals_ & variables(FunctionSettings)
