"""The OpenAPI document is served without a token and describes every route of the contract."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ApiClient, Stack

CONTRACT = [
    ("GET", "/health"), ("GET", "/status"), ("POST", "/tenant"), ("GET", "/tenants"),
    ("GET", "/tenant/{tenant_id}"), ("PUT", "/tenant/{tenant_id}"), ("DELETE", "/tenant/{tenant_id}"),
    ("POST", "/tenant/{tenant_id}/api-key"), ("DELETE", "/tenant/{tenant_id}/api-key"),
    ("POST", "/account"), ("GET", "/accounts"), ("GET", "/account/{id}"), ("DELETE", "/account/{id}"),
    ("POST", "/commands/add-messages"), ("GET", "/messages"), ("GET", "/messages/{id}"),
    ("POST", "/commands/delete-messages"), ("POST", "/commands/cleanup-messages"), ("POST", "/commands/run-now"),
    ("POST", "/commands/suspend"), ("POST", "/commands/activate"), ("GET", "/command-log"),
]


def shape(path: str) -> str:
    """A path with its parameter names blanked: ``/account/{id}`` and ``/account/{account_id}`` are one route."""
    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.fixture(scope="module")
def api(shared_stack: tuple[Stack, ApiClient]) -> ApiClient:
    return shared_stack[1]


@pytest.fixture(scope="module")
def document(api: ApiClient) -> dict:
    resp = api.get("/openapi.json")
    assert resp.status == 200, resp.text
    return dict(resp.json)


def test_openapi_is_served_without_a_token(api: ApiClient) -> None:
    resp = api.get("/openapi.json")
    assert resp.status == 200
    assert resp.json["openapi"].startswith("3.")


@pytest.mark.parametrize(("method", "path"), CONTRACT, ids=[f"{m} {p}" for m, p in CONTRACT])
def test_every_contract_route_is_in_the_document(document: dict, method: str, path: str) -> None:
    paths = {shape(p): ops for p, ops in document["paths"].items()}
    assert shape(path) in paths, sorted(paths)
    assert method.lower() in paths[shape(path)]


def test_document_describes_the_request_bodies(document: dict) -> None:
    schemas = document["components"]["schemas"]
    for name in ("TenantCreate", "TenantUpdate", "AccountCreate", "AddMessagesRequest"):
        assert name in schemas
    assert "tenant_id" in schemas["TenantCreate"]["required"]
    assert {"id", "host", "port"} <= set(schemas["AccountCreate"]["required"])


def test_document_never_offers_a_password_in_an_answer(document: dict) -> None:
    schemas = document["components"]["schemas"]
    for name in ("AccountView", "TenantView"):
        assert "password" not in schemas[name]["properties"]
        assert "token" not in schemas[name]["properties"]
