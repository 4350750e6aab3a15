"""The OpenAPI document is served without a token and describes every route of the contract."""

from __future__ import annotations

import pytest

from local.template import load_template
from mail_proxy.api.compat_messages_api import NOT_PROVIDED
from mail_proxy.api.http_api import app
from tests.conftest import ApiClient, Stack


def served_routes() -> list[tuple[str, str, bool]]:
    """(method, path as OpenAPI writes it, in the document?) of every route the api function's resolver serves."""
    return [(route.method, route.openapi_path, route.include_in_schema)
            for route in [*app._static_routes, *app._dynamic_routes]]


CONTRACT = sorted((method, path) for method, path, documented in served_routes() if documented)
"""The routes of the contract: what the resolver serves, less what it keeps out of the document."""


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


def test_the_document_describes_every_route_served_and_no_other(document: dict) -> None:
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == set(CONTRACT)
    assert {("GET", "/health"), ("POST", "/commands/add-messages"), ("GET", "/messages/{message_id}")} <= described


def test_only_pages_for_people_and_upstream_routes_not_provided_stay_out_of_the_document() -> None:
    hidden = {(method, path) for method, path, documented in served_routes() if not documented}
    public = {(route.method, route.path) for route in load_template().http_routes("ApiFunction")
              if not route.authorized}
    assert hidden - set(NOT_PROVIDED) <= public  # /openapi.json, /docs, /redoc: public, for people and generators
    assert set(NOT_PROVIDED) <= hidden


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
