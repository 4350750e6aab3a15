"""Key rotation without downtime: values written under key A are re-encrypted under key B while A is still a
previous key, after which B alone decrypts every stored secret. Warm containers follow the secret within
its cache period, re-encryption never overwrites a concurrent change and goes on past failures, and
``key-usage`` says when the old key may go."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mail_proxy.__main__ import main
from mail_proxy.adapters import secrets_config
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb.keys import ACCOUNT_PREFIX, TENANT_SK, account_sk, tenant_id_from_pk, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.domain import clock
from mail_proxy.errors import ThrottledError
from mail_proxy.security.crypto import DecryptionError, KeyRing, key_id
from mail_proxy.usecases import key_rotation
from mail_proxy.usecases.accounts import password_context
from mail_proxy.usecases.tenants import client_auth_context, signing_secret_context
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
        if sk.startswith(ACCOUNT_PREFIX) and "password" in item:
            found[f"{pk}/{sk}"] = {"password": item["password"]["S"]}
        elif sk == TENANT_SK:
            values = {k: item[k]["S"] for k in ("signing_secret", "previous_signing_secret") if k in item}
            auth = item.get("client_auth", {}).get("M", {})
            values.update({f"client_auth.{k}": auth[k]["S"] for k in ("token", "password") if k in auth})
            found[f"{pk}/{sk}"] = values
    return found


@pytest.fixture
def secrets_under_key_a(api: ApiClient) -> dict[str, str]:
    tokens = {"acme": api.create_tenant("acme"),
              "beta": api.create_tenant("beta", client_base_url="https://beta.example.com",
                                        client_auth={"method": "bearer", "token": BEARER})}
    for (tenant, account), password in PASSWORDS.items():
        api.create_account(tokens[tenant], account, password=password)
    api.create_account(tokens["acme"], "nopass", password=None)
    return tokens


@pytest.mark.usefixtures("secrets_under_key_a")
def test_after_reencryption_only_the_new_key_decrypts_every_password(stack: Stack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    use_keys(monkeypatch, KEY_B)
    accounts = {(tenant_id_from_pk(pk), sk.removeprefix(ACCOUNT_PREFIX)): v["password"]
                for key, v in stored(stack).items() for pk, sk in [key.split("/")] if sk.startswith(ACCOUNT_PREFIX)}
    assert {k: secrets_config.decrypt(v, context=password_context(*k)) for k, v in accounts.items()} == PASSWORDS


def where(tenant_id: str, account_id: str | None = None) -> str:
    """``stored``'s name of a tenant item (or account item)."""
    return f"{tenant_pk(tenant_id)}/{TENANT_SK if account_id is None else account_sk(account_id)}"


@pytest.mark.usefixtures("secrets_under_key_a")
def test_after_reencryption_report_credentials_and_signing_secrets_decrypt_with_the_new_key(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    use_keys(monkeypatch, KEY_B)
    beta = stored(stack)[where("beta")]
    assert secrets_config.decrypt(beta["client_auth.token"], context=f"{client_auth_context('beta')}:token") == BEARER
    for tenant in ("acme", "beta"):
        value = stored(stack)[where(tenant)]["signing_secret"]
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
    value = stored(stack)[where("acme", "smtp1")]["password"]
    with pytest.raises(DecryptionError):
        secrets_config.decrypt(value, context=password_context("acme", "smtp1"))


@pytest.mark.usefixtures("secrets_under_key_a")
def test_old_values_still_decrypt_while_the_old_key_is_a_previous_key(stack: Stack,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    value = stored(stack)[where("acme", "smtp1")]["password"]
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


# ------------------------------------------------------------------------------------------ warm containers


def ciphertexts(stack: Stack) -> list[str]:
    """Every encrypted value anywhere in the table, found without knowing the item shapes."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                if name == "S" and isinstance(inner, str):
                    found.extend([inner] if inner.startswith("ENC:") else [])
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(stack.raw_items())
    return found


def key_ids(stack: Stack) -> list[str]:
    return sorted(value.split(":")[1] for value in ciphertexts(stack))


def put_keys(secret_id: str, current: bytes, *previous: bytes) -> None:
    """What the operator does with ``aws secretsmanager put-secret-value``."""
    value = {"encryption_key": b64(current), **({"previous_keys": [b64(k) for k in previous]} if previous else {})}
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))


def used_key(value: str) -> str:
    return value.split(":")[1]


@pytest.fixture
def secret(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The functions read the key from a Secrets Manager secret holding key A, as in AWS."""
    arn = boto3.client("secretsmanager").create_secret(
        Name="mail-proxy-key", SecretString=json.dumps({"encryption_key": b64(KEY_A)}))["ARN"]
    monkeypatch.setenv("SECRET_ID", arn)
    monkeypatch.delenv("MAIL_PROXY_ENCRYPTION_KEY")
    reset_caches()
    yield arn
    reset_caches()


def test_a_warm_container_encrypts_with_the_new_key_once_the_cache_period_has_passed(secret: str) -> None:
    assert used_key(secrets_config.encrypt("pw", context="c")) == key_id(KEY_A)
    put_keys(secret, KEY_B, KEY_A)
    clock.advance(secrets_config.SECRET_MAX_AGE_SECONDS - 1)
    assert used_key(secrets_config.encrypt("pw", context="c")) == key_id(KEY_A)  # still its cached ring
    clock.advance(1)
    assert used_key(secrets_config.encrypt("pw", context="c")) == key_id(KEY_B)


def test_the_key_cache_period_is_configurable(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_SECRET_MAX_AGE_SECONDS", "30")
    reset_caches()
    assert used_key(secrets_config.encrypt("pw", context="c")) == key_id(KEY_A)
    put_keys(secret, KEY_B, KEY_A)
    clock.advance(30)
    assert used_key(secrets_config.encrypt("pw", context="c")) == key_id(KEY_B)


def test_a_value_written_by_a_container_with_the_new_key_decrypts_at_once_in_a_warm_one(secret: str) -> None:
    secrets_config.key_ring()  # warm, with key A alone
    put_keys(secret, KEY_B, KEY_A)
    written_elsewhere = KeyRing(KEY_B, (KEY_A,)).encrypt("pw", context="c")
    assert secrets_config.decrypt(written_elsewhere, context="c") == "pw"


def test_a_secret_that_cannot_be_read_again_keeps_the_cached_key_ring(secret: str) -> None:
    assert secrets_config.decrypt(secrets_config.encrypt("pw", context="c"), context="c") == "pw"
    boto3.client("secretsmanager").delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    clock.advance(secrets_config.SECRET_MAX_AGE_SECONDS)
    value = secrets_config.encrypt("pw", context="c")
    assert used_key(value) == key_id(KEY_A) and secrets_config.decrypt(value, context="c") == "pw"


def test_nothing_written_during_rotation_becomes_undecryptable_once_the_old_key_is_removed(
        api: ApiClient, stack: Stack, secret: str) -> None:
    repo, operator = MailRepository(stack.table_name), KeyRing(KEY_B, (KEY_A,))  # the operator's own process
    token = api.create_tenant("acme", client_base_url="https://acme.example.com",
                              client_auth={"method": "bearer", "token": BEARER})
    api.create_account(token, "before", password="pw-before")
    put_keys(secret, KEY_B, KEY_A)  # 1. new key current, old key previous
    api.create_account(token, "during", password="pw-during")  # a warm container, still on key A
    clock.advance(secrets_config.SECRET_MAX_AGE_SECONDS)  # 2. wait the cache period
    api.create_account(token, "after", password="pw-after")
    assert key_rotation.reencrypt_all(repo, operator).failed == []  # 3.
    api.create_account(token, "later", password="pw-later")  # the warm container goes on writing
    usage = key_rotation.key_usage(repo)
    assert usage.count(key_id(KEY_A)) == 0 and not usage.incomplete  # 4. the old key is at zero
    put_keys(secret, KEY_B)  # 5. old key removed
    reset_caches()  # any container, warm or new

    assert set(key_ids(stack)) == {key_id(KEY_B)}
    for account in ("before", "during", "after", "later"):
        value = MailRepository(stack.table_name).get_account("acme", account).password  # type: ignore[union-attr]
        assert secrets_config.decrypt(value, context=password_context("acme", account)) == f"pw-{account}"
    tenant = MailRepository(stack.table_name).require_tenant("acme")
    assert secrets_config.decrypt(tenant.client_auth["token"],
                                  context=f"{client_auth_context('acme')}:token") == BEARER


def test_key_usage_keeps_the_old_key_while_a_container_still_wrote_with_it_after_reencrypt(
        api: ApiClient, stack: Stack, secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = api.create_tenant("acme")
    put_keys(secret, KEY_B, KEY_A)
    assert main(["reencrypt", "--table", stack.table_name, "--secret-id", secret]) == 0  # run too early
    secrets_config.reset_secrets()  # the api's container, whose cached ring still holds key A alone
    put_keys(secret, KEY_A)
    secrets_config.key_ring()
    put_keys(secret, KEY_B, KEY_A)
    api.create_account(token, "late", password="pw-late")
    capsys.readouterr()
    assert main(["key-usage", "--table", stack.table_name, "--secret-id", secret]) == 1
    out = capsys.readouterr().out
    assert f"key {key_id(KEY_A)} (previous): 1 values (SMTP passwords 1)" in out
    assert "keep every previous key" in out


# ------------------------------------------------------------------------------------------ re-encryption


def account_password(stack: Stack, tenant: str, account: str) -> str:
    item = MailRepository(stack.table_name).get_account(tenant, account)
    assert item is not None
    return str(item.password)


def test_reencrypt_keeps_a_password_changed_while_it_runs(stack: Stack, api: ApiClient,
                                                          secrets_under_key_a: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    original = MailRepository.replace_ciphertexts
    changed: list[str] = []

    def tenant_changes_it_first(repo: MailRepository, tenant_id: str, account_id: str | None,
                                changes: dict[tuple[str, ...], tuple[str, str]]) -> bool:
        if (tenant_id, account_id) == ("acme", "smtp1") and not changed:
            changed.append("smtp1")
            api.create_account(secrets_under_key_a["acme"], "smtp1", password="changed-meanwhile")
        return original(repo, tenant_id, account_id, changes)

    monkeypatch.setattr(MailRepository, "replace_ciphertexts", tenant_changes_it_first)
    report = key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    assert changed and report.retried == 1 and report.failed == []
    value = account_password(stack, "acme", "smtp1")
    assert secrets_config.decrypt(value, context=password_context("acme", "smtp1")) == "changed-meanwhile"
    assert set(key_ids(stack)) == {key_id(KEY_B)}


def test_reencrypt_keeps_a_signing_secret_rotated_while_it_runs(stack: Stack, api: ApiClient,
                                                                secrets_under_key_a: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    original = MailRepository.replace_ciphertexts
    rotated: list[str] = []

    def tenant_rotates_first(repo: MailRepository, tenant_id: str, account_id: str | None,
                             changes: dict[tuple[str, ...], tuple[str, str]]) -> bool:
        if (tenant_id, account_id) == ("acme", None) and not rotated:
            resp = api.post("/tenant/acme/signing-secret", token=secrets_under_key_a["acme"])
            rotated.append(resp.json["signing_secret"])
        return original(repo, tenant_id, account_id, changes)

    monkeypatch.setattr(MailRepository, "replace_ciphertexts", tenant_rotates_first)
    report = key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    assert report.retried == 1 and report.failed == []
    tenant = MailRepository(stack.table_name).require_tenant("acme")
    assert secrets_config.decrypt(tenant.signing_secret, context=signing_secret_context("acme")) == rotated[0]
    assert set(key_ids(stack)) == {key_id(KEY_B)}  # the previous signing secret was re-encrypted too


def test_reencrypt_goes_on_past_a_value_that_does_not_decrypt_and_lists_it(
        stack: Stack, secrets_under_key_a: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    broken = account_password(stack, "acme", "smtp1")[:-8] + "AAAAAAA="
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key=item_key(tenant_pk("acme"), account_sk("smtp1")),
        UpdateExpression="SET password = :p", ExpressionAttributeValues={":p": {"S": broken}})
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    capsys.readouterr()

    assert main(["reencrypt", "--table", stack.table_name]) == 1
    out = capsys.readouterr().out
    assert "1 not re-encrypted" in out and "tenant acme account smtp1 password: value does not decrypt" in out
    assert broken not in out and broken.split(":")[2] not in out
    assert key_ids(stack).count(key_id(KEY_A)) == 1  # the broken one alone
    for tenant, account in (("acme", "smtp2"), ("beta", "smtp1")):
        value = account_password(stack, tenant, account)
        assert secrets_config.decrypt(value, context=password_context(tenant, account)) == PASSWORDS[tenant, account]


def test_reencrypt_goes_on_past_a_write_that_fails_and_lists_it(
        stack: Stack, secrets_under_key_a: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    original = MailRepository.replace_ciphertexts

    def throttled_once(repo: MailRepository, tenant_id: str, account_id: str | None,
                       changes: dict[tuple[str, ...], tuple[str, str]]) -> bool:
        if (tenant_id, account_id) == ("acme", "smtp1"):
            raise ThrottledError("the table is busy, retry shortly")
        return original(repo, tenant_id, account_id, changes)

    monkeypatch.setattr(MailRepository, "replace_ciphertexts", throttled_once)
    report = key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())

    assert report.failed == ["tenant acme account smtp1: the table is busy, retry shortly"]
    assert (report.accounts, report.tenants) == (2, 2)
    assert key_ids(stack).count(key_id(KEY_A)) == 1


# ------------------------------------------------------------------------------------------ key usage


@pytest.mark.usefixtures("secrets_under_key_a")
def test_key_usage_counts_the_stored_values_under_each_key(api: ApiClient, stack: Stack,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    mailbox = {"host": "imap.example.com", "port": 993, "user": "bounces", "password": "imap-pw", "tls": "ssl"}
    assert api.put("/tenant/acme", token=ADMIN_TOKEN, body={"bounce_imap": mailbox}).status == 200
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    capsys.readouterr()

    assert main(["key-usage", "--table", stack.table_name]) == 1
    out = capsys.readouterr().out
    assert f"key {key_id(KEY_B)} (current): 0 values" in out
    assert (f"key {key_id(KEY_A)} (previous): 7 values (SMTP passwords 3, bounce mailbox passwords 1, "
            "report credentials 1, signing secrets 2)") in out

    assert main(["reencrypt", "--table", stack.table_name]) == 0
    assert main(["key-usage", "--table", stack.table_name]) == 0
    out = capsys.readouterr().out
    assert f"key {key_id(KEY_A)} (previous): 0 values" in out and f"key {key_id(KEY_B)} (current): 7 values" in out
    assert "previous keys can be removed" in out
    assert len(ciphertexts(stack)) == 7  # nothing encrypted that key-usage does not count
    for secret in (*PASSWORDS.values(), BEARER, "imap-pw"):
        assert secret not in out


def test_every_retired_signing_secret_in_its_grace_survives_a_key_rotation(
        stack: Stack, api: ApiClient, secrets_under_key_a: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.usecases.tenants import signing_secrets_in_use

    token = secrets_under_key_a["acme"]
    issued = [api.post("/tenant/acme/signing-secret?grace_seconds=3600", token=token).json["signing_secret"]
              for _ in range(3)]
    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    report = key_rotation.reencrypt_all(MailRepository(stack.table_name), secrets_config.key_ring())
    assert report.failed == []
    use_keys(monkeypatch, KEY_B)  # the old key is gone
    tenant = MailRepository(stack.table_name).require_tenant("acme")
    in_use = signing_secrets_in_use(tenant)
    assert in_use[0] == issued[-1] and set(issued) <= set(in_use)
