"""SMTP accounts through the API: created, replaced, listed and read without a password, deleted, isolated.

The module shares one moto stack (see ``conftest.shared_stack``); each test has its own tenants.
"""

from __future__ import annotations

import itertools

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import account_sk, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.adapters.secrets_config import decrypt
from mail_proxy.usecases.accounts import password_context
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack

PASSWORD = "smtp-password-known-9f2c"
_serial = itertools.count(1)
NAMES: dict[str, str] = {}  # token -> tenant id


@pytest.fixture
def api(shared_stack: tuple[Stack, ApiClient]) -> ApiClient:
    return shared_stack[1]


@pytest.fixture
def stack(shared_stack: tuple[Stack, ApiClient]) -> Stack:
    return shared_stack[0]


def new_tenant(api: ApiClient, name: str) -> str:
    tenant_id = f"{name}{next(_serial)}"
    token = api.create_tenant(tenant_id)
    NAMES[token] = tenant_id
    return token


@pytest.fixture
def acme(api: ApiClient) -> str:
    return new_tenant(api, "acme")


@pytest.fixture
def beta(api: ApiClient) -> str:
    return new_tenant(api, "beta")


def account_body(account_id: str = "smtp1", **fields: object) -> dict[str, object]:
    return {"id": account_id, "host": "smtp.example.com", "port": 587, "user": "mailer@example.com",
            "password": PASSWORD, **fields}


def test_create_account_answers_201(api: ApiClient, acme: str) -> None:
    resp = api.post("/account", token=acme, body=account_body())
    assert resp.status == 201 and resp.json == {"ok": True}


def test_created_account_is_shown_with_contract_defaults(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body={"id": "smtp1", "host": "smtp.example.com", "port": 587})
    account = api.get("/account/smtp1", token=acme).json
    assert account["tenant_id"] == NAMES[acme] and account["tls"] == "starttls"
    assert account["limit_behavior"] == "defer" and account["has_password"] is False


def test_account_with_the_same_id_is_replaced(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body(port=587))
    resp = api.post("/account", token=acme, body=account_body(host="smtp2.example.com", port=465, tls="ssl"))
    assert resp.status == 201
    accounts = api.get("/accounts", token=acme).json["accounts"]
    assert [(a["id"], a["host"], a["port"], a["tls"]) for a in accounts] == \
        [("smtp1", "smtp2.example.com", 465, "ssl")]


def test_replacing_an_account_keeps_its_creation_time(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body())
    created = api.get("/account/smtp1", token=acme).json["created_at"]
    api.post("/account", token=acme, body=account_body(port=2525))
    assert api.get("/account/smtp1", token=acme).json["created_at"] == created


def test_list_accounts_never_shows_a_password(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body())
    resp = api.get("/accounts", token=acme)
    account = resp.json["accounts"][0]
    assert account["has_password"] is True and "password" not in account
    assert PASSWORD not in resp.text and "ENC:" not in resp.text


def test_get_account_never_shows_a_password(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body())
    resp = api.get("/account/smtp1", token=acme)
    assert resp.json["has_password"] is True and "password" not in resp.json
    assert PASSWORD not in resp.text and "ENC:" not in resp.text


def test_stored_password_is_encrypted_for_its_tenant_and_account(api: ApiClient, acme: str, stack: Stack) -> None:
    api.post("/account", token=acme, body=account_body())
    item = boto3.client("dynamodb").get_item(TableName=stack.table_name,
                                             Key=item_key(tenant_pk(NAMES[acme]), account_sk("smtp1")))["Item"]
    stored = item["password"]["S"]
    assert stored.startswith("ENC:") and PASSWORD not in stored
    assert decrypt(stored, context=password_context(NAMES[acme], "smtp1")) == PASSWORD


def test_deleted_account_is_404_afterwards(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body())
    resp = api.delete("/account/smtp1", token=acme)
    assert resp.status == 200 and resp.json == {"ok": True}
    assert api.get("/account/smtp1", token=acme).status == 404
    assert api.get("/accounts", token=acme).json["accounts"] == []


def test_deleting_an_unknown_account_is_404(api: ApiClient, acme: str) -> None:
    resp = api.delete("/account/ghost", token=acme)
    assert resp.status == 404 and "not found" in resp.json["detail"]


def test_another_tenant_cannot_see_the_account(api: ApiClient, acme: str, beta: str) -> None:
    api.post("/account", token=acme, body=account_body("acme-smtp"))
    assert api.get("/account/acme-smtp", token=beta).status == 404
    assert api.get(f"/account/acme-smtp?tenant_id={NAMES[acme]}", token=beta).status == 403
    assert api.get("/accounts", token=beta).json["accounts"] == []
    assert api.get(f"/accounts?tenant_id={NAMES[acme]}", token=beta).status == 403


def test_another_tenant_cannot_delete_the_account(api: ApiClient, acme: str, beta: str) -> None:
    api.post("/account", token=acme, body=account_body("acme-smtp"))
    assert api.delete("/account/acme-smtp", token=beta).status == 404
    assert api.delete(f"/account/acme-smtp?tenant_id={NAMES[acme]}", token=beta).status == 403
    assert api.get("/account/acme-smtp", token=acme).status == 200


def test_same_account_id_in_two_tenants_are_two_accounts(api: ApiClient, acme: str, beta: str) -> None:
    api.post("/account", token=acme, body=account_body(host="acme.example.com"))
    api.post("/account", token=beta, body=account_body(host="beta.example.com"))
    assert api.get("/account/smtp1", token=acme).json["host"] == "acme.example.com"
    assert api.get("/account/smtp1", token=beta).json["host"] == "beta.example.com"


def test_admin_creates_an_account_for_a_named_tenant(api: ApiClient, acme: str) -> None:
    resp = api.post("/account", token=ADMIN_TOKEN, body=account_body(tenant_id=NAMES[acme]))
    assert resp.status == 201
    assert api.get(f"/account/smtp1?tenant_id={NAMES[acme]}", token=ADMIN_TOKEN).json["tenant_id"] == NAMES[acme]
    assert api.get("/account/smtp1", token=acme).status == 200


def test_admin_must_name_the_tenant_of_an_account(api: ApiClient, acme: str) -> None:
    resp = api.post("/account", token=ADMIN_TOKEN, body=account_body())
    assert resp.status == 422 and "tenant_id is required" in resp.json["detail"]


def test_account_for_an_unknown_tenant_is_404(api: ApiClient) -> None:
    resp = api.post("/account", token=ADMIN_TOKEN, body=account_body(tenant_id="ghost-tenant"))
    assert resp.status == 404


def test_account_creation_is_logged_without_the_password(api: ApiClient, acme: str) -> None:
    api.post("/account", token=acme, body=account_body())
    log = api.get(f"/command-log?tenant_id={NAMES[acme]}", token=ADMIN_TOKEN)
    entry = next(c for c in log.json["commands"] if c["command"] == "add_account")
    assert entry["payload"]["id"] == "smtp1" and entry["payload"]["password"] == "***"
    assert PASSWORD not in log.text
