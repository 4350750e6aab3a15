"""Key rotation without downtime: values written under key A are re-encrypted under key B while A is still a
previous key, after which B alone decrypts every stored secret."""

from __future__ import annotations

import base64

import boto3
import pytest

from mail_proxy import key_rotation, secrets_config
from mail_proxy.__main__ import main
from mail_proxy.accounts import password_context
from mail_proxy.crypto import DecryptionError, key_id
from mail_proxy.repository import MailRepository
from mail_proxy.tenants import client_auth_context, signing_secret_context
from tests.conftest import ADMIN_TOKEN, ENCRYPTION_KEY, ApiClient, Stack, reset_caches

KEY_A = base64.b64decode(ENCRYPTION_KEY)  # the key every test stack starts with
KEY_B = bytes(range(200, 232))
PASSWORDS = {("acme", "smtp1"): "acme-pw-1", ("acme", "smtp2"): "acme-pw-2", ("beta", "smtp1"): "beta-pw-1"}
BEARER = "beta-report-bearer-token"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def use_keys(monkeypatch: pytest.MonkeyPatch, current: bytes, previous: bytes | None = None) -> None:
    monkeypatch.setenv("MAIL_PROXY_ENCRYPTION_KEY", b64(current))
    if previous is None:
        monkeypatch.delenv("MAIL_PROXY_PREVIOUS_KEYS", raising=False)
    else:
        monkeypatch.setenv("MAIL_PROXY_PREVIOUS_KEYS", b64(previous))
    reset_caches()


def stored(stack: Stack) -> dict[str, dict[str, str]]:
    """Every encrypted value in the table, by (tenant item or account item) and field."""
    found: dict[str, dict[str, str]] = {}
    for item in boto3.client("dynamodb").scan(TableName=stack.table_name)["Items"]:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        if sk.startswith("ACCOUNT#") and "password" in item:
            found[f"{pk}/{sk}"] = {"password": item["password"]["S"]}
        elif sk == "#TENANT":
            values = {k: item[k]["S"] for k in ("signing_secret", "previous_signing_secret") if k in item}
            auth = item.get("client_auth", {}).get("M", {})
            values.update({f"client_auth.{k}": auth[k]["S"] for k in ("token", "password") if k in auth})
            found[f"{pk}/{sk}"] = values
    return found


@pytest.fixture
def secrets_under_key_a(api: ApiClient) -> None:
    tokens = {"acme": api.create_tenant("acme"),
              "beta": api.create_tenant("beta", client_base_url="https://beta.example.com",
                                        client_auth={"method": "bearer", "token": BEARER})}
    for (tenant, account), password in PASSWORDS.items():
        api.create_account(tokens[tenant], account, password=password)
    api.create_account(tokens["acme"], "nopass", password=None)


@pytest.mark.usefixtures("secrets_under_key_a")
def test_after_reencryption_only_the_new_key_decrypts_every_password(stack: Stack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    use_keys(monkeypatch, KEY_B)
    accounts = {(pk.split("#")[1], sk.removeprefix("ACCOUNT#")): v["password"]
                for key, v in stored(stack).items() if "ACCOUNT#" in key for pk, sk in [key.split("/")]}
    assert {k: secrets_config.decrypt(v, context=password_context(*k)) for k, v in accounts.items()} == PASSWORDS


@pytest.mark.usefixtures("secrets_under_key_a")
def test_after_reencryption_report_credentials_and_signing_secrets_decrypt_with_the_new_key(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    use_keys(monkeypatch, KEY_B)
    beta = stored(stack)["TENANT#beta/#TENANT"]
    assert secrets_config.decrypt(beta["client_auth.token"], context=f"{client_auth_context('beta')}:token") == BEARER
    for tenant in ("acme", "beta"):
        value = stored(stack)[f"TENANT#{tenant}/#TENANT"]["signing_secret"]
        assert secrets_config.decrypt(value, context=signing_secret_context(tenant))


@pytest.mark.usefixtures("secrets_under_key_a")
def test_every_stored_secret_names_the_new_key_after_reencryption(stack: Stack,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    report = key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())
    values = [v for fields in stored(stack).values() for v in fields.values()]
    assert values and {v.split(":")[1] for v in values} == {key_id(KEY_B)}
    assert (report.accounts, report.tenants) == (3, 2)


@pytest.mark.usefixtures("secrets_under_key_a")
def test_without_reencryption_the_new_key_alone_cannot_decrypt(stack: Stack,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B)
    value = stored(stack)["TENANT#acme/ACCOUNT#smtp1"]["password"]
    with pytest.raises(DecryptionError):
        secrets_config.decrypt(value, context=password_context("acme", "smtp1"))


@pytest.mark.usefixtures("secrets_under_key_a")
def test_old_values_still_decrypt_while_the_old_key_is_a_previous_key(stack: Stack,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    value = stored(stack)["TENANT#acme/ACCOUNT#smtp1"]["password"]
    assert secrets_config.decrypt(value, context=password_context("acme", "smtp1")) == "acme-pw-1"


@pytest.mark.usefixtures("secrets_under_key_a")
def test_reencrypting_twice_changes_nothing_the_second_time(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    repo, ring = MailRepository(stack.table_name), secrets_config.key_ring()
    key_rotation.reencrypt_all(repo, ring)
    before = stored(stack)
    second = key_rotation.reencrypt_all(repo, ring)
    assert (second.accounts, second.tenants) == (0, 0)
    assert second.already_current == 3 + 1 + 2  # account passwords, beta's bearer token, signing secrets
    assert stored(stack) == before


@pytest.mark.usefixtures("secrets_under_key_a")
def test_reencrypt_command_reports_what_it_moved(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    assert main(["reencrypt", "--table", stack.table_name]) == 0
    out = capsys.readouterr().out
    assert f"re-encrypted under key {key_id(KEY_B)}: 3 account passwords, 2 tenant credentials" in out
    for secret in (*PASSWORDS.values(), BEARER):
        assert secret not in out


@pytest.mark.usefixtures("secrets_under_key_a")
def test_api_keeps_working_after_rotation(api: ApiClient, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())
    use_keys(monkeypatch, KEY_B)
    token = api.post("/tenant/acme/api-key", token=ADMIN_TOKEN).json["api_key"]
    assert api.get("/account/smtp1", token=token).json["has_password"] is True
