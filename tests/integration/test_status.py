"""``GET /status``: messages by status and the oldest waiting one, for the caller's tenant or (admin) all.

The contract's ``{"ok": true, "active": true}`` stays; the counts come on top. The work is bounded (at most
``STATUS_MAX_MESSAGES`` messages counted per call, oldest first) and ``truncated`` says when not all were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.domain import clock
from mail_proxy.usecases import service_status
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, submit
from tests.fixtures.smtp_server import ScriptedSmtpServer


@pytest.fixture
def delivery(stack: Stack) -> Iterator[DeliveryHarness]:
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str) -> str:
    token = api.create_tenant(tenant_id)
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def status(api: ApiClient, token: str, query: str = "") -> dict[str, Any]:
    resp = api.get("/status" + query, token=token)
    assert resp.status == 200, resp.text
    return dict(resp.json)


def test_a_tenant_sees_its_messages_by_status_and_the_age_of_the_oldest_waiting_one(
        api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, message("first"))
    clock.advance(100)
    submit(api, token, message("second"), message("later", deferred_ts=clock.now_ts() + 3600),
           message("bad", to=["not-an-address"]))
    clock.advance(20)
    answer = status(api, token)
    assert answer["ok"] is True and answer["active"] is True  # the contract's fields stay
    counts = answer["messages"]
    assert [counts[s] for s in ("pending", "deferred", "sending", "sent", "error")] == [2, 1, 0, 0, 1]
    assert sum(counts.values()) == 4
    assert 120 <= answer["oldest_waiting_age_seconds"] <= 122
    assert answer["truncated"] is False
    [mine] = answer["tenants"]
    assert mine["tenant_id"] == "acme" and mine["active"] is True and mine["counted"] == 4
    assert mine["oldest_waiting_id"] == "first"


def test_sent_messages_are_no_longer_waiting(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, message("m1"), message("m2"))
    delivery.drain()
    answer = status(api, token)
    assert answer["messages"]["sent"] == 2 and answer["messages"]["pending"] == 0
    assert answer["oldest_waiting_age_seconds"] is None
    assert answer["tenants"][0]["oldest_waiting_id"] is None


def test_a_tenant_sees_only_its_own_tenant(api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    acme = make_tenant(api, smtp, "acme")
    rival = make_tenant(api, smtp, "rival")
    submit(api, rival, message("r1"), message("r2"))
    answer = status(api, acme)
    assert [t["tenant_id"] for t in answer["tenants"]] == ["acme"]
    assert sum(answer["messages"].values()) == 0
    assert api.get("/status?tenant_id=rival", token=acme).status == 403


def test_the_admin_sees_every_tenant_and_the_totals(api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    acme = make_tenant(api, smtp, "acme")
    rival = make_tenant(api, smtp, "rival")
    submit(api, acme, message("a1"))
    clock.advance(50)
    submit(api, rival, message("r1"), message("r2"), message("bad", to=[]))
    answer = status(api, ADMIN_TOKEN)
    by_tenant = {t["tenant_id"]: t for t in answer["tenants"]}
    assert set(by_tenant) == {"acme", "rival"}
    assert by_tenant["acme"]["messages"]["pending"] == 1
    assert by_tenant["rival"]["messages"]["pending"] == 2 and by_tenant["rival"]["messages"]["error"] == 1
    assert answer["messages"]["pending"] == 3 and answer["messages"]["error"] == 1
    assert answer["oldest_waiting_age_seconds"] == by_tenant["acme"]["oldest_waiting_age_seconds"] >= 50


def test_the_admin_may_ask_for_one_tenant(api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    make_tenant(api, smtp, "acme")
    rival = make_tenant(api, smtp, "rival")
    submit(api, rival, message("r1"))
    answer = status(api, ADMIN_TOKEN, "?tenant_id=rival")
    assert [t["tenant_id"] for t in answer["tenants"]] == ["rival"]
    assert answer["messages"]["pending"] == 1
    assert api.get("/status?tenant_id=nobody", token=ADMIN_TOKEN).status == 404


def test_a_suspended_tenant_shows_it(api: ApiClient, smtp: ScriptedSmtpServer) -> None:
    token = make_tenant(api, smtp, "acme")
    assert api.post("/commands/suspend?batch_code=spring", token=token).status == 200
    assert api.put("/tenant/acme", token=ADMIN_TOKEN, body={"active": False}).status == 200
    [mine] = status(api, token)["tenants"]
    assert mine["active"] is False and mine["suspended_batches"] == ["spring"]


def test_counting_stops_at_the_limit_and_says_so(
        api: ApiClient, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_status, "STATUS_MAX_MESSAGES", 3)
    acme = make_tenant(api, smtp, "acme")
    rival = make_tenant(api, smtp, "rival")
    for i in range(5):
        submit(api, acme, message(f"a{i}"))
        clock.advance(1)
    submit(api, rival, message("r1"))
    mine = status(api, acme)
    assert mine["truncated"] is True and mine["tenants"][0]["counted"] == 3
    assert mine["messages"]["pending"] == 3
    assert mine["tenants"][0]["oldest_waiting_id"] == "a0"  # oldest first: still the true oldest
    everyone = status(api, ADMIN_TOKEN)
    by_tenant = {t["tenant_id"]: t for t in everyone["tenants"]}
    assert everyone["truncated"] is True
    assert by_tenant["acme"]["counted"] == 3 and by_tenant["rival"]["counted"] == 0
    assert by_tenant["rival"]["truncated"] is True


def test_an_unknown_token_gets_401(api: ApiClient) -> None:
    assert api.get("/status", token="nobody-has-this-token").status == 401
