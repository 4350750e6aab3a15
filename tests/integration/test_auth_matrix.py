"""Every route of the contract x every kind of caller: the right status, and never another tenant's data.

Two tenants, ``acme<n>`` (whose resources every request targets) and ``rival<n>``, each with an account
``smtp1`` and a message ``m1``. Each tenant's data carries a marker (``acmemark`` / ``rivalmark``) in its
name, SMTP host and subjects, so an answer that leaks another tenant's data is caught by a substring search.

Building a moto stack is most of an integration test's time, so the module shares one (``shared_stack`` of
tests/conftest.py), and requests that change nothing (every refused request, every read) share one pair of
tenants; a request that may change something gets a fresh pair. ``test_refused_request_changes_nothing`` is
what makes that sharing safe (a request without a token never reaches a function, so only the ones with a
token are checked).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import messages_gsi1pk, tenant_pk
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

OWNER_MARK = "acmemark"
RIVAL_MARK = "rivalmark"
WRONG_TOKEN = "wrong-token-that-matches-nobody-0123"
_serial = itertools.count(1)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {owner} is the target tenant, {new} a tenant id nobody uses yet
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
    Route("POST", "/tenant", "admin", body={"tenant_id": "{new}", "name": "New Co"}, created=True),
    Route("GET", "/tenants", "admin", query={"active_only": "true"}),
    Route("GET", "/tenant/{owner}", "self"),
    Route("PUT", "/tenant/{owner}", "self", body={"name": "Renamed"}),
    Route("DELETE", "/tenant/{owner}", "admin"),
    Route("POST", "/tenant/{owner}/api-key", "admin"),
    Route("POST", "/tenant/{owner}/suspend", "admin"),
    Route("POST", "/tenant/{owner}/resume", "admin"),
    Route("DELETE", "/tenant/{owner}/api-key", "admin"),
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
WRITE_ROUTES = [r for r in ROUTES if r.method != "GET"]
ADMIN_ROUTES = [r for r in ROUTES if r.who == "admin"]


@dataclass
class World:
    api: ApiClient
    stack: Stack
    owner: str
    rival: str
    tokens: dict[str, str]

    @property
    def owner_token(self) -> str:
        return self.tokens[self.owner]

    @property
    def rival_token(self) -> str:
        return self.tokens[self.rival]


def make_world(stack: Stack, api: ApiClient) -> World:
    n = next(_serial)
    owner, rival = f"acme{n}", f"rival{n}"
    tokens = {}
    for tenant, mark in ((owner, OWNER_MARK), (rival, RIVAL_MARK)):
        token = api.create_tenant(tenant, name=f"{tenant} {mark}")
        api.create_account(token, host=f"{mark}.example.com")
        resp = api.post("/commands/add-messages", token=token,
                        body={"messages": [message("m1", subject=f"{mark} subject", batch_code=f"{mark}-batch")]})
        assert resp.status == 200 and resp.json["queued"] == 1, resp.text
        tokens[tenant] = token
    return World(api, stack, owner, rival, tokens)


@pytest.fixture(scope="module")
def shared_world(shared_stack: tuple[Stack, ApiClient]) -> World:
    """Tenants for requests that change nothing."""
    return make_world(*shared_stack)


@pytest.fixture
def world(shared_stack: tuple[Stack, ApiClient]) -> World:
    """Fresh tenants, for a test that changes something."""
    return make_world(*shared_stack)


def world_for(request: pytest.FixtureRequest, route: Route, caller: str) -> World:
    changes = caller in ("admin", "own-tenant") and route.method != "GET" and expected_status(route, caller) < 300
    return request.getfixturevalue("world" if changes else "shared_world")


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def call(world: World, route: Route, caller: str) -> Any:
    """The request as each caller would send it: admin and the other tenant name the owner; the owner omits it."""
    token = {"no-token": None, "wrong-token": WRONG_TOKEN, "other-tenant": world.rival_token,
             "admin": ADMIN_TOKEN, "own-tenant": world.owner_token}[caller]
    names = {"owner": world.owner, "new": f"new-{world.owner}"}
    query = dict(route.query)
    body = _fill(route.body, names)
    if route.who == "tenant" and caller in ("admin", "other-tenant"):
        if route.tenant_in_body:
            body["tenant_id"] = world.owner
        else:
            query["tenant_id"] = world.owner
    path = _fill(route.path, names) + ("?" + urlencode(query) if query else "")
    return world.api.request(route.method, path, token=token, body=body)


def expected_status(route: Route, caller: str) -> int:
    if route.who == "anyone":
        return 200
    if caller in ("no-token", "wrong-token"):
        return 401
    ok = 201 if route.created else 200
    if caller == "admin" or route.who == "token":
        return ok
    if route.who == "admin" or caller == "other-tenant":
        return 403
    return ok


def _query(ddb: Any, table: str, value: str, index: str | None = None) -> list[dict[str, Any]]:
    key = "gsi1pk" if index else "pk"
    kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": f"{key} = :v",
                              "ExpressionAttributeValues": {":v": {"S": value}}}
    if index:
        kwargs["IndexName"] = index
    items: list[dict[str, Any]] = []
    while True:
        page = ddb.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def business_items(world: World) -> list[str]:
    """Every item of the world's tenants (and of a tenant a request might have created), log excluded.

    Read partition by partition, since a scan of the shared table grows slow.
    """
    ddb = boto3.client("dynamodb")
    table = world.stack.table_name
    tenants = [world.owner, world.rival, f"new-{world.owner}"]
    partitions = [tenant_pk(t) for t in tenants]
    for tenant in tenants:
        partitions += [i["pk"]["S"] for i in _query(ddb, table, messages_gsi1pk(tenant), index="ByTenant")]
    return sorted(json.dumps(i, sort_keys=True) for pk in partitions for i in _query(ddb, table, pk))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_route_answers_each_caller_with_the_contract_status(request: pytest.FixtureRequest, route: Route,
                                                            caller: str) -> None:
    resp = call(world_for(request, route, caller), route, caller)
    assert resp.status == expected_status(route, caller), resp.text
    if resp.status >= 400:
        if caller == "no-token":
            assert resp.json == {"message": "Unauthorized"}  # the gateway's own answer, before the authorizer
        else:
            assert isinstance(resp.json, dict) and set(resp.json) == {"detail"} and resp.json["detail"], resp.text


@pytest.mark.parametrize("caller", ["no-token", "wrong-token", "other-tenant", "own-tenant"])
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_answer_never_contains_another_tenants_data(request: pytest.FixtureRequest, route: Route,
                                                    caller: str) -> None:
    text = call(world_for(request, route, caller), route, caller).text.lower()
    if caller != "other-tenant":
        assert RIVAL_MARK not in text, text
    if caller != "own-tenant":
        assert OWNER_MARK not in text, text


@pytest.mark.parametrize("caller", ["wrong-token", "other-tenant"])
@pytest.mark.parametrize("route", WRITE_ROUTES, ids=[r.name for r in WRITE_ROUTES])
def test_refused_request_changes_nothing(shared_world: World, route: Route, caller: str) -> None:
    before = business_items(shared_world)
    resp = call(shared_world, route, caller)
    assert resp.status in (401, 403), resp.text
    assert business_items(shared_world) == before


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=[r.name for r in ADMIN_ROUTES])
def test_tenant_token_can_never_reach_an_admin_route(shared_world: World, route: Route) -> None:
    resp = call(shared_world, route, "own-tenant")
    assert resp.status == 403
    assert "Admin token required" in resp.json["detail"]


# ------------------------------------------------------------------------------------------ isolation


def test_tenant_token_cannot_read_another_tenants_message(world: World) -> None:
    world.api.post("/commands/add-messages", token=world.owner_token,
                   body={"messages": [message("owner-only", subject=f"{OWNER_MARK} private")]})
    named = world.api.get(f"/messages/owner-only?tenant_id={world.owner}", token=world.rival_token)
    unnamed = world.api.get("/messages/owner-only", token=world.rival_token)
    assert named.status == 403
    assert unnamed.status == 404
    assert OWNER_MARK not in named.text + unnamed.text


def test_same_message_id_in_two_tenants_are_two_messages(world: World) -> None:
    mine = world.api.get("/messages/m1", token=world.rival_token)
    assert mine.status == 200
    assert mine.json["tenant_id"] == world.rival
    assert mine.json["message"]["subject"] == f"{RIVAL_MARK} subject"


def test_tenant_listing_shows_only_its_own_messages(world: World) -> None:
    listing = world.api.get("/messages?include_history=true", token=world.rival_token)
    assert [(m["tenant_id"], m["id"]) for m in listing.json["messages"]] == [(world.rival, "m1")]


def test_tenant_token_cannot_delete_another_tenants_messages(world: World) -> None:
    world.api.post("/commands/add-messages", token=world.owner_token, body={"messages": [message("owner-only")]})
    resp = world.api.post("/commands/delete-messages", token=world.rival_token, body={"ids": ["owner-only"]})
    assert resp.json == {"ok": True, "removed": 0, "not_found": ["owner-only"], "unauthorized": [], "in_flight": []}
    assert world.api.get("/messages/owner-only", token=world.owner_token).status == 200


def test_tenant_token_cannot_see_another_tenants_accounts(world: World) -> None:
    world.api.create_account(world.owner_token, "owner-smtp", host=f"{OWNER_MARK}2.example.com")
    assert world.api.get("/account/owner-smtp", token=world.rival_token).status == 404
    accounts = world.api.get("/accounts", token=world.rival_token).json["accounts"]
    assert [(a["tenant_id"], a["id"]) for a in accounts] == [(world.rival, "smtp1")]


def test_tenant_token_cannot_delete_another_tenants_account(world: World) -> None:
    world.api.create_account(world.owner_token, "owner-smtp")
    assert world.api.delete("/account/owner-smtp", token=world.rival_token).status == 404
    assert world.api.delete(f"/account/owner-smtp?tenant_id={world.owner}", token=world.rival_token).status == 403
    assert world.api.get("/account/owner-smtp", token=world.owner_token).status == 200


def test_tenant_token_cannot_suspend_another_tenant(world: World) -> None:
    resp = world.api.post(f"/commands/suspend?tenant_id={world.owner}", token=world.rival_token)
    assert resp.status == 403
    assert world.api.get(f"/tenant/{world.owner}", token=ADMIN_TOKEN).json["suspended_batches"] == []


def test_tenant_token_cannot_create_an_account_in_another_tenant(world: World) -> None:
    resp = world.api.post("/account", token=world.rival_token,
                          body={"id": "planted", "tenant_id": world.owner, "host": "evil.example.com", "port": 587})
    assert resp.status == 403
    assert world.api.get("/account/planted", token=world.owner_token).status == 404


def test_admin_token_must_name_the_tenant_on_tenant_routes(world: World) -> None:
    for method, path in (("GET", "/accounts"), ("GET", "/account/smtp1"), ("DELETE", "/account/smtp1"),
                         ("GET", "/messages"), ("GET", "/messages/m1"), ("POST", "/commands/suspend"),
                         ("POST", "/commands/activate")):
        resp = world.api.request(method, path, token=ADMIN_TOKEN)
        assert resp.status == 422, (method, path, resp.text)
        assert "tenant_id is required" in resp.json["detail"]


def test_revoked_tenant_token_is_answered_401(world: World) -> None:
    assert world.api.delete(f"/tenant/{world.owner}/api-key", token=ADMIN_TOKEN).status == 200
    resp = world.api.get("/messages", token=world.owner_token)
    assert resp.status == 401 and "detail" in resp.json
