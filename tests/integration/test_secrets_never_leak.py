"""No response, log line or table item ever contains an SMTP password, a report credential or a token in clear.

One journey through the API sets known secrets (an SMTP password, a bearer token and a basic password for
reports, a tenant API token) and uses them every way a client would, including bad requests that carry
them; every answer, every log record (all loggers, DEBUG and up) and every item of the tables are kept and
searched for each plaintext. The journey runs once for the module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from mail_proxy.adapters.observability import logger as powertools_logger
from mail_proxy.security.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

SMTP_PASSWORD = "smtp-PLAIN-password-5d1e"
BEARER_TOKEN = "bearer-PLAIN-report-token-a7"
BASIC_PASSWORD = "basic-PLAIN-report-password-c3"
TENANT_TOKEN = "tenant-PLAIN-api-token-0123456789ab"
SECRETS = {"SMTP password": SMTP_PASSWORD, "bearer token": BEARER_TOKEN, "basic password": BASIC_PASSWORD,
           "tenant token": TENANT_TOKEN}


@dataclass
class Journey:
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # (request, status, headers + body)
    shown_once: list[tuple[str, str]] = field(default_factory=list)  # answers that must show a new key
    log_lines: list[str] = field(default_factory=list)
    own_log_lines: list[str] = field(default_factory=list)  # the proxy's and the local stack's, not botocore's
    table_text: str = ""


class Collect(logging.Handler):
    def __init__(self, journey: Journey) -> None:
        super().__init__(level=logging.DEBUG)
        self.journey = journey

    def emit(self, record: logging.LogRecord) -> None:
        lines = [record.getMessage(), powertools_logger.registered_formatter.format(record)]
        self.journey.log_lines.extend(lines)
        if not record.name.startswith(("botocore", "boto3", "urllib3", "moto")):
            self.journey.own_log_lines.extend(lines)


@pytest.fixture(scope="module")
def journey(shared_stack: tuple[Stack, ApiClient]) -> Iterator[Journey]:
    stack, api = shared_stack
    seen = Journey()
    root = logging.getLogger()
    handler, old_level = Collect(seen), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        walk(api, seen)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    ddb = boto3.client("dynamodb")
    idempotency = stack.resources.tables["IdempotencyTable"].name
    seen.table_text = json.dumps([stack.raw_items(), ddb.scan(TableName=idempotency)["Items"]])
    yield seen


def walk(api: ApiClient, seen: Journey) -> None:
    def call(method: str, path: str, token: str | None, body: Any = None, *, shown_once: bool = False,
             headers: dict[str, str] | None = None) -> Any:
        resp = api.request(method, path, token=token, body=body, headers=headers)
        assert resp.status < 500, (method, path, resp.text)
        text = json.dumps(resp.headers) + resp.text
        if shown_once:
            seen.shown_once.append((f"{method} {path}", text))
        else:
            seen.answers.append((f"{method} {path}", resp.status, text))
        return resp

    bearer = {"method": "bearer", "token": BEARER_TOKEN}
    basic = {"method": "basic", "user": "reports", "password": BASIC_PASSWORD}
    account = {"id": "smtp1", "host": "smtp.example.com", "port": 587, "user": "mailer", "password": SMTP_PASSWORD}

    call("POST", "/tenant", ADMIN_TOKEN, {"tenant_id": "acme", "token": TENANT_TOKEN, "client_auth": bearer,
                                          "client_base_url": "https://acme.example.com"}, shown_once=True)
    call("POST", "/tenant", ADMIN_TOKEN, {"tenant_id": "beta", "client_auth": basic}, shown_once=True)
    call("POST", "/tenant", ADMIN_TOKEN, {"tenant_id": "acme", "token": TENANT_TOKEN})  # 409
    call("POST", "/tenant", ADMIN_TOKEN, {"tenant_id": "gamma", "token": TENANT_TOKEN + " x"})  # 422
    call("PUT", "/tenant/acme", TENANT_TOKEN, {"client_auth": basic})
    call("PUT", "/tenant/acme", TENANT_TOKEN, {"client_auth": bearer})
    call("PUT", "/tenant/acme", TENANT_TOKEN, {"client_auth": {**bearer, "token": BEARER_TOKEN + "\r\n"}})
    call("PUT", "/tenant/acme", TENANT_TOKEN, {"client_auth": {**basic, "scheme": BASIC_PASSWORD}})
    call("PUT", "/tenant/acme", TENANT_TOKEN, {"token": TENANT_TOKEN})
    call("POST", "/account", TENANT_TOKEN, account)
    call("POST", "/account", TENANT_TOKEN, {**account, "port": 465})
    call("POST", "/account", ADMIN_TOKEN, {**account, "tenant_id": "beta"})
    call("POST", "/account", TENANT_TOKEN, {**account, "id": "bad1", "password": SMTP_PASSWORD + "\r\nQUIT"})
    call("POST", "/account", TENANT_TOKEN, {**account, "id": "bad2", "password": [SMTP_PASSWORD]})
    call("POST", "/account", TENANT_TOKEN, {**account, "id": "bad3", "passwd": SMTP_PASSWORD})
    call("POST", "/account", TENANT_TOKEN, {**account, "id": "bad4", "port": 25})
    call("POST", "/account", TENANT_TOKEN, {**account, "password": "p" * 2000})
    call("POST", "/commands/add-messages", TENANT_TOKEN, {"messages": [message("m1"), message("bad", to=[])]},
         headers={"Idempotency-Key": "journey-1"})
    call("POST", "/commands/add-messages", TENANT_TOKEN, {"messages": [message("m1")]},
         headers={"Idempotency-Key": "journey-1"})
    for path in ("/tenant/acme", "/accounts", "/account/smtp1", "/messages?include_history=true", "/messages/m1",
                 "/messages/bad", "/status"):
        call("GET", path, TENANT_TOKEN)
    for path in ("/tenants", "/tenant/acme", "/tenant/beta", "/accounts?tenant_id=beta", "/command-log",
                 "/command-log?tenant_id=acme"):
        call("GET", path, ADMIN_TOKEN)
    call("GET", "/status", TENANT_TOKEN + "x")
    call("GET", "/status", TENANT_TOKEN.upper())
    call("GET", "/status", ADMIN_TOKEN + "x")
    call("GET", "/openapi.json", None)
    call("POST", "/tenant/beta/api-key", ADMIN_TOKEN, shown_once=True)
    call("DELETE", "/tenant/beta/api-key", ADMIN_TOKEN)


def test_the_journey_met_every_secret(journey: Journey) -> None:
    """Guards the other tests: each plaintext did go through the API."""
    assert len(journey.answers) > 30
    assert TENANT_TOKEN in journey.shown_once[0][1]
    assert any("API auth successful for tenant 'acme'" in line for line in journey.log_lines)
    assert hash_token(TENANT_TOKEN) in journey.table_text


@pytest.mark.parametrize("name", SECRETS)
def test_no_response_contains_a_plain_secret(journey: Journey, name: str) -> None:
    leaks = [(request, status) for request, status, text in journey.answers if SECRETS[name] in text]
    assert leaks == []


def test_a_new_api_key_appears_only_in_the_answer_that_creates_it(journey: Journey) -> None:
    created_acme, created_beta, new_beta_key = (text for _, text in journey.shown_once)
    assert TENANT_TOKEN in created_acme
    assert BEARER_TOKEN not in created_acme
    for text in (created_beta, new_beta_key):
        for secret in SECRETS.values():
            assert secret not in text


@pytest.mark.parametrize("name", SECRETS)
def test_no_log_line_contains_a_plain_secret(journey: Journey, name: str) -> None:
    assert [line for line in journey.log_lines if SECRETS[name] in line] == []


def test_admin_token_never_appears_in_a_log_line(journey: Journey) -> None:
    assert [line for line in journey.log_lines if ADMIN_TOKEN in line] == []


def test_no_log_line_of_the_proxy_contains_a_token_hash(journey: Journey) -> None:
    hashes = (hash_token(TENANT_TOKEN), hash_token(ADMIN_TOKEN))
    assert journey.own_log_lines
    assert [line for line in journey.own_log_lines if any(h in line for h in hashes)] == []


@pytest.mark.parametrize("name", SECRETS)
def test_no_table_item_contains_a_plain_secret(journey: Journey, name: str) -> None:
    assert SECRETS[name] not in journey.table_text


def test_admin_token_is_never_stored(journey: Journey) -> None:
    assert ADMIN_TOKEN not in journey.table_text
