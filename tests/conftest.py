"""Shared fixtures: moto resources built from template.yaml, and an in-process HTTP API.

The in-process API goes through the same gateway emulation as the local stack (authorizer first, then
the api function with an HTTP API payload 2.0 event), so integration tests see what a client sees.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.gateway import HttpApiGateway
from local.lambdas import import_source
from local.resources import Provisioned, provision
from local.template import load_template
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer

ADMIN_TOKEN = "admin-token-for-tests-0123456789"

# -------------------------------------------------------------------------------------------------------
# Every AWS call a handler makes, in this process and in the local stacks the tests start, is recorded;
# tests/integration/test_iam_policies.py checks them against template.yaml after every other test.

AWS_CALLS_LAST = "test_iam_policies.py"
_aws_calls: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    from local.aws_calls import CALL_LOG_ENV, CallRecorder, install

    log_dir = Path(tempfile.mkdtemp(prefix="aws-calls-"))
    os.environ[CALL_LOG_ENV] = str(log_dir)  # local stacks started as subprocesses append their calls here
    _aws_calls.update(recorder=install(CallRecorder()), log_dir=log_dir, deselected=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    if _aws_calls.get("log_dir"):
        shutil.rmtree(_aws_calls["log_dir"], ignore_errors=True)


def pytest_deselected(items: list[pytest.Item]) -> None:
    _aws_calls["deselected"] = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of recorded AWS calls runs after every test that records them."""
    items.sort(key=lambda item: Path(str(item.fspath)).name == AWS_CALLS_LAST)


@pytest.fixture(scope="session")
def recorded_aws_calls() -> dict[str, Any]:
    """`recorder` (this process), `log_dir` (other processes' logs), `deselected` (a partial run)."""
    return _aws_calls
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()
FUNCTIONS = ("AuthorizerFunction", "ApiFunction", "SenderFunction", "SchedulerFunction")


def reset_caches() -> None:
    """Forget every per-container cache, as a new Lambda container would."""
    from mail_proxy.adapters.aws_clients import reset_clients
    from mail_proxy.adapters.secrets_config import reset_secrets
    from mail_proxy.api.http_api import reset_services
    from mail_proxy.domain import clock
    from mail_proxy.settings import reset_settings

    reset_clients()
    reset_settings()
    reset_secrets()
    reset_services()
    clock.reset()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MailProxy")


@dataclass
class Stack:
    resources: Provisioned
    env: dict[str, str]

    @property
    def table_name(self) -> str:
        return self.resources.tables["MailTable"].name

    def queue_url(self, logical_id: str) -> str:
        return self.resources.queues[logical_id].url

    def raw_items(self) -> list[dict[str, Any]]:
        """Every item of the main table, unparsed: what an attacker with table access would see."""
        ddb = boto3.client("dynamodb")
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        while True:
            page = ddb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        template = load_template()
        resources = provision(template)
        env: dict[str, str] = {}
        for logical_id in FUNCTIONS:
            env.update(template.function_environment(logical_id, resources.resolved))
        env.pop("SECRET_ID", None)
        env.update({"MAIL_PROXY_ENCRYPTION_KEY": ENCRYPTION_KEY, "GMP_API_TOKEN": ADMIN_TOKEN,
                    "MAIL_PROXY_LOCAL": "1", "MAIL_PROXY_ALLOW_LOOPBACK": "1"})
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        yield Stack(resources, env)
        reset_caches()


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str
    json: Any = field(default=None)


class ApiClient:
    """Calls the API in-process through the emulated HTTP API gateway."""

    def __init__(self) -> None:
        self.authorizer = _load("authorizer")
        self.api = _load("api")
        self.gateway = HttpApiGateway(api=self.api.lambda_handler, authorizer=self.authorizer.lambda_handler,
                                      routes=load_template().http_routes("ApiFunction"), auth_cache_seconds=0)

    def request(self, method: str, path: str, *, token: str | None = None, body: Any = None,
                raw_body: bytes | None = None, headers: dict[str, str] | None = None) -> ApiResponse:
        sent_headers = [("content-type", "application/json")]
        if token is not None:
            sent_headers.append(("x-api-token", token))
        sent_headers.extend((k, v) for k, v in (headers or {}).items())
        data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
        response = self.gateway.handle(method, path, sent_headers, data)
        text = response.body.decode("utf-8") if isinstance(response.body, bytes) else str(response.body)
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = None
        return ApiResponse(response.status, {k.lower(): v for k, v in dict(response.headers).items()}, text,
                           parsed)

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("DELETE", path, **kw)

    # conveniences used across tests ------------------------------------------------------------
    def create_tenant(self, tenant_id: str, **fields: Any) -> str:
        resp = self.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": tenant_id, **fields})
        assert resp.status == 201, resp.text
        return str(resp.json["api_key"])

    def create_account(self, token: str, account_id: str = "smtp1", **fields: Any) -> None:
        body = {"id": account_id, "host": "smtp.example.com", "port": 587, "user": "u@example.com",
                "password": "smtp-secret", **fields}
        resp = self.post("/account", token=token, body=body)
        assert resp.status == 201, resp.text


_loaded: dict[str, Any] = {}


def load_function_module(name: str) -> Any:
    """A function's ``app`` module, imported once per test session (as a warm container would keep it)."""
    if name not in _loaded:
        path = Path(__file__).resolve().parent.parent / "functions" / name / "app.py"
        _loaded[name] = import_source(path, f"test_function_{name}", extra_path=path.parent)
    return _loaded[name]


_load = load_function_module


@pytest.fixture
def api(stack: Stack) -> ApiClient:
    return ApiClient()


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    """A plain SMTP server on loopback that accepts everything (modules needing TLS or AUTH override it)."""
    with ScriptedSmtpServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[ReportReceiver]:
    """A tenant's application on loopback receiving delivery reports."""
    with ReportReceiver() as app:
        yield app


def message(mid: str, **overrides: Any) -> dict[str, Any]:
    base = {"id": mid, "account_id": "smtp1", "from": "sender@example.com", "to": ["rcpt@example.org"],
            "subject": f"Subject {mid}", "body": "Hello"}
    base.update(overrides)
    return base
