"""Inputs at the edges of the contract: each used to be a 500, a silent "everything", or a message accepted
by the API that could never be built. The module shares one moto stack (``conftest.shared_stack``).
"""

from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest

from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

_serial = itertools.count(1)


@pytest.fixture
def tenant(shared_stack: tuple[Stack, ApiClient]) -> tuple[ApiClient, str, str]:
    _stack, api = shared_stack
    tenant_id = f"edge{next(_serial)}"
    token = api.create_tenant(tenant_id)
    api.create_account(token)
    return api, tenant_id, token


# ---------------------------------------------------------------------------------------- /files tokens


@pytest.mark.parametrize("token", ["é.é", "abc.dé", "ü" * 40 + "." + "0" * 32, "\u2603.\u2603"])
@pytest.mark.parametrize("encoded", [False, True])
def test_a_non_ascii_download_token_is_not_found_not_a_500(shared_stack: tuple[Stack, ApiClient],
                                                            token: str, encoded: bool) -> None:
    _stack, api = shared_stack
    resp = api.get("/files/" + (quote(token, safe="") if encoded else token))
    assert resp.status == 404, resp.text


def test_read_token_refuses_non_ascii_text_instead_of_raising() -> None:
    from mail_proxy.security.crypto import KeyRing
    from mail_proxy.security.file_links import read_token

    ring = KeyRing(bytes(32))
    assert read_token(ring, "é." + "a" * 32) is None
    assert read_token(ring, "abc.é") is None


# ------------------------------------------------------------------------------------ suspend / activate


@pytest.mark.parametrize("command", ["suspend", "activate"])
def test_an_empty_batch_code_is_refused_not_taken_as_every_batch(tenant: tuple[ApiClient, str, str],
                                                                  command: str) -> None:
    api, tenant_id, token = tenant
    resp = api.post(f"/commands/{command}?batch_code=", token=token)
    assert resp.status == 422, resp.text
    assert "batch_code" in resp.text
    assert api.get(f"/tenant/{tenant_id}", token=ADMIN_TOKEN).json["suspended_batches"] == []


def test_a_blank_batch_code_is_refused_by_the_use_case_too(tenant: tuple[ApiClient, str, str]) -> None:
    api, tenant_id, token = tenant
    resp = api.post("/commands/suspend?batch_code=%20", token=token)
    assert resp.status == 422, resp.text
    assert api.get(f"/tenant/{tenant_id}", token=ADMIN_TOKEN).json["suspended_batches"] == []


# ------------------------------------------------------------------------- headers the proxy builds itself


@pytest.mark.parametrize("name", ["Content-Disposition", "content-language", "Content-ID", "Content-Foo",
                                  "MIME-Version", "Content-Transfer-Encoding", "Bcc", "Message-ID", "Date",
                                  "X-Mail-Proxy-ID", "Return-Path"])
def test_a_header_the_proxy_builds_is_refused_at_submission_naming_it(tenant: tuple[ApiClient, str, str],
                                                                       name: str) -> None:
    api, _tenant_id, token = tenant
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("h1", headers={name: "value"}), message("ok1")]})
    assert resp.status == 200, resp.text
    assert resp.json["queued"] == 1
    [rejected] = resp.json["rejected"]
    assert rejected["id"] == "h1" and name in rejected["reason"]


def test_a_message_id_that_is_not_left_at_right_is_refused_at_submission(tenant: tuple[ApiClient, str, str]
                                                                         ) -> None:
    api, _tenant_id, token = tenant
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("mid1", message_id="no-at-sign")]})
    assert resp.json["queued"] == 0 and "message_id" in resp.json["rejected"][0]["reason"]


def test_an_ordinary_custom_header_is_still_accepted(tenant: tuple[ApiClient, str, str]) -> None:
    api, _tenant_id, token = tenant
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("x1", headers={"X-Campaign": "spring", "List-Unsubscribe": "<x@y>"},
                                               message_id="<abc@example.com>")]})
    assert resp.json == {"ok": True, "queued": 1, "rejected": []}


# ------------------------------------------------------------------- priorities: a deliberate difference


@pytest.mark.parametrize("priority", [4, -1, 99, "urgent", True])
def test_a_priority_outside_0_to_3_is_rejected_not_clamped(tenant: tuple[ApiClient, str, str],
                                                           priority: object) -> None:
    """Upstream clamps; this project rejects with a reason (docs/compat.md, "Deliberate differences")."""
    api, _tenant_id, token = tenant
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("p1", priority=priority), message("p2", priority=3)]})
    assert resp.status == 200, resp.text
    assert resp.json["queued"] == 1
    [rejected] = resp.json["rejected"]
    assert rejected["id"] == "p1" and "priority" in rejected["reason"]


def test_a_default_priority_outside_0_to_3_refuses_the_call(tenant: tuple[ApiClient, str, str]) -> None:
    api, _tenant_id, token = tenant
    resp = api.post("/commands/add-messages", token=token,
                    body={"messages": [message("d1")], "default_priority": 7})
    assert resp.status == 422 and "default_priority" in resp.text
