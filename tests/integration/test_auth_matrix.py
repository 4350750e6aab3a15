"""Every route of the contract × every kind of caller: the right status, and never another tenant's data.

Two tenants, ``acme`` (whose resources every request targets) and ``rival``, each with an account ``smtp1``
and a message ``m1``. Each tenant's data carries a marker (``acmemark`` / ``rivalmark``) in its name, SMTP
host and subjects, so an answer that leaks the other tenant's data is caught by a substring search.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

OWNER = "acme"
OWNER_MARK = "acmemark"
RIVAL = "rival"
RIVAL_MARK = "rivalmark"
WRONG_TOKEN = "wrong-token-that-matches-nobody-0123"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    who: str  # anyone | token | admin | self (admin or that tenant) | tenant
    body: Any = None
    tenant_in_body: bool = False  # the route reads tenant_id from its body, not its query
    created: bool = False  # 201 on success
    query: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/health", "anyone"),
    Route("GET", "/status", "token"),
    Route("POST", "/tenant", "admin", body={"tenant_id": "newco", "name": "New Co"}, created=True),
    Route("GET", "/tenants", "admin", query={"active_only": "true"}),
    Route("GET", f"/tenant/{OWNER}", "self"),
    Route("PUT", f"/tenant/{OWNER}", "self", body={"name": "Renamed"}),
    Route("DELETE", f"/tenant/{OWNER}", "admin"),
    Route("POST", f"/tenant/{OWNER}/api-key", "admin"),
    Route("DELETE", f"/tenant/{OWNER}/api-key", "admin"),
    Route("POST", "/account", "tenant", body={"id": "smtp2", "host": "smtp2.example.com", "port": 465},
          tenant_in_body=True, created=True),
    Route("GET", "/accounts", "tenant"),
    Route("GET", "/account/smtp1", "tenant"),
    Route("DELETE", "/account/smtp1", "tenant"),
    Route("POST", "/commands/add-messages", "tenant", body={"messages": [message("m2")]}),
    Route("GET", "/messages", "tenant", query={"include_history": "true"}),
    Route("GET", "/messages/m1", "tenant"),
    Route("POST", "/commands/delete-messages", "tenant", body={"ids": ["m1"]}),
    Route("POST", "/commands/cleanup-messages", "tenant", body={"older_than_seconds": 0}),
    Route("POST", "/commands/run-now", "tenant"),
    Route("POST", "/commands/suspend", "tenant"),
    Route("POST", "/commands/activate", "tenant"),
    Route("GET", "/command-log", "admin"),
    Route("GET", "/openapi.json", "anyone"),
]
CALLERS = ["no-token", "wrong-token", "other-tenant", "admin", "own-tenant"]
ADMIN_ROUTES = [r for r in ROUTES if r.who == "admin"]


@dataclass
class World:
    api: ApiClient
    stack: Stack
    tokens: dict[str, str]


@pytest.fixture
def world(api: ApiClient, stack: Stack) -> World:
    tokens = {}
    for tenant, mark in ((OWNER, OWNER_MARK), (RIVAL, RIVAL_MARK)):
        token = api.create_tenant(tenant, name=f"{tenant} {mark}")
        api.create_account(token, host=f"{mark}.example.com")
        resp = api.post("/commands/add-messages", token=token,
                        body={"messages": [message("m1", subject=f"{mark} subject", batch_code=f"{mark}-batch")]})
        assert resp.status == 200 and resp.json["queued"] == 1, resp.text
        tokens[tenant] = token
    return World(api, stack, tokens)


def call(world: World, route: Route, caller: str) -> Any:
    """The request as each caller would send it: admin and the other tenant name acme; acme may omit it."""
    token = {"no-token": None, "wrong-token": WRONG_TOKEN, "other-tenant": world.tokens[RIVAL],
             "admin": ADMIN_TOKEN, "own-tenant": world.tokens[OWNER]}[caller]
    query = dict(route.query)
    body = json.loads(json.dumps(route.body)) if route.body is not None else None
    if route.who == "tenant" and caller in ("admin", "other-tenant"):
        if route.tenant_in_body:
            body["tenant_id"] = OWNER
        else:
            query["tenant_id"] = OWNER
    path = route.path + ("?" + urlencode(query) if query else "")
    return world.api.request(route.method, path, token=token, body=body)


def expected_status(route: Route, caller: str) -> int:
    if route.who == "anyone":
        return 200
    if caller in ("no-token", "wrong-token"):
        return 401
    ok = 201 if route.created else 200
    if caller == "admin":
        return ok
    if route.who == "token":
        return ok
    if route.who == "admin":
        return 403
    if caller == "other-tenant":
        return 403
    return ok


def business_items(stack: Stack) -> list[str]:
    """The table without the command log, as comparable text."""
    return sorted(json.dumps(i, sort_keys=True) for i in stack.raw_items() if not i["pk"]["S"].endswith("#LOG"))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_route_answers_each_caller_as_the_contract_says(world: World, route: Route, caller: str) -> None:
    resp = call(world, route, caller)
    assert resp.status == expected_status(route, caller), resp.text
    if resp.status >= 400:
        if caller == "no-token":
            assert resp.json == {"message": "Unauthorized"}  # the gateway's own answer, before the authorizer
        else:
            assert isinstance(resp.json, dict) and set(resp.json) == {"detail"} and resp.json["detail"], resp.text


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", [r for r in ROUTES if r.who not in ("anyone",)], ids=lambda r: r.name)
def test_answer_never_contains_another_tenants_data(world: World, route: Route, caller: str) -> None:
    resp = call(world, route, caller)
    text = resp.text.lower()
    if caller != "admin":
        assert RIVAL_MARK not in text or caller == "other-tenant", resp.text
        assert OWNER_MARK not in text or caller == "own-tenant", resp.text


@pytest.mark.parametrize("caller", ["no-token", "wrong-token", "other-tenant"])
@pytest.mark.parametrize("route", [r for r in ROUTES if r.who in ("admin", "self", "tenant")], ids=lambda r: r.name)
def test_refused_request_changes_nothing(world: World, route: Route, caller: str) -> None:
    before = business_items(world.stack)
    resp = call(world, route, caller)
    assert resp.status in (401, 403), resp.text
    assert business_items(world.stack) == before


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=[r.name for r in ADMIN_ROUTES])
def test_tenant_token_can_never_reach_an_admin_route(world: World, route: Route) -> None:
    resp = call(world, route, "own-tenant")
    assert resp.status == 403
    assert "Admin token required" in resp.json["detail"]


# ------------------------------------------------------------------------------------------ isolation


def test_tenant_token_cannot_read_another_tenants_message(world: World) -> None:
    world.api.post("/commands/add-messages", token=world.tokens[OWNER],
                   body={"messages": [message("acme-only", subject=f"{OWNER_MARK} private")]})
    named = world.api.get(f"/messages/acme-only?tenant_id={OWNER}", token=world.tokens[RIVAL])
    unnamed = world.api.get("/messages/acme-only", token=world.tokens[RIVAL])
    assert named.status == 403
    assert unnamed.status == 404
    assert OWNER_MARK not in named.text + unnamed.text


def test_same_message_id_in_two_tenants_are_two_messages(world: World) -> None:
    mine = world.api.get("/messages/m1", token=world.tokens[RIVAL])
    assert mine.status == 200
    assert mine.json["tenant_id"] == RIVAL and mine.json["message"]["subject"] == f"{RIVAL_MARK} subject"


def test_tenant_listing_shows_only_its_own_messages(world: World) -> None:
    listing = world.api.get("/messages?include_history=true", token=world.tokens[RIVAL])
    assert [(m["tenant_id"], m["id"]) for m in listing.json["messages"]] == [(RIVAL, "m1")]


def test_tenant_token_cannot_delete_another_tenants_messages(world: World) -> None:
    world.api.post("/commands/add-messages", token=world.tokens[OWNER], body={"messages": [message("acme-only")]})
    resp = world.api.post("/commands/delete-messages", token=world.tokens[RIVAL], body={"ids": ["acme-only"]})
    assert resp.json == {"ok": True, "removed": 0, "not_found": ["acme-only"], "unauthorized": []}
    assert world.api.get("/messages/acme-only", token=world.tokens[OWNER]).status == 200


def test_tenant_token_cannot_see_another_tenants_accounts(world: World) -> None:
    world.api.create_account(world.tokens[OWNER], "acme-smtp", host=f"{OWNER_MARK}2.example.com")
    assert world.api.get("/account/acme-smtp", token=world.tokens[RIVAL]).status == 404
    accounts = world.api.get("/accounts", token=world.tokens[RIVAL]).json["accounts"]
    assert [a["id"] for a in accounts] == ["smtp1"] and accounts[0]["tenant_id"] == RIVAL


def test_tenant_token_cannot_suspend_another_tenant(world: World) -> None:
    resp = world.api.post(f"/commands/suspend?tenant_id={OWNER}", token=world.tokens[RIVAL])
    assert resp.status == 403
    assert world.api.get(f"/tenant/{OWNER}", token=ADMIN_TOKEN).json["suspended_batches"] == []


def test_tenant_token_cannot_create_an_account_in_another_tenant(world: World) -> None:
    resp = world.api.post("/account", token=world.tokens[RIVAL],
                          body={"id": "planted", "tenant_id": OWNER, "host": "evil.example.com", "port": 587})
    assert resp.status == 403
    assert world.api.get("/account/planted", token=world.tokens[OWNER]).status == 404


def test_admin_token_must_name_the_tenant_on_tenant_routes(world: World) -> None:
    for method, path in (("GET", "/accounts"), ("GET", "/messages"), ("GET", "/messages/m1"),
                         ("POST", "/commands/suspend"), ("DELETE", "/account/smtp1")):
        resp = world.api.request(method, path, token=ADMIN_TOKEN)
        assert resp.status == 422, (method, path, resp.text)
        assert "tenant_id is required" in resp.json["detail"]


def test_revoked_tenant_token_is_answered_401_not_403(world: World) -> None:
    assert world.api.delete(f"/tenant/{OWNER}/api-key", token=ADMIN_TOKEN).status == 200
    resp = world.api.get("/messages", token=world.tokens[OWNER])
    assert resp.status == 401 and "detail" in resp.json
