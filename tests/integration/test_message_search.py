"""``GET /messages`` search: by recipient (through the recipient index), subject text, ``batch_code`` and a
creation-time range (through the creation-time index), with paging, and never by reading the tenant's
whole history. The module shares one moto stack; each test has its own tenant."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb.keys import RECIPIENT_SHARDS, log_pk, recipient_shard_pk, tenant_pk
from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

_serial = itertools.count(1)


class Tenant:
    def __init__(self, shared: tuple[Stack, ApiClient], name: str) -> None:
        self.stack, self.api = shared
        self.id = f"{name}{next(_serial)}"
        self.token = self.api.create_tenant(self.id)
        self.api.create_account(self.token)

    def add(self, *messages: dict[str, Any]) -> None:
        resp = self.api.post("/commands/add-messages", token=self.token, body={"messages": list(messages)})
        assert resp.status == 200 and resp.json["queued"] == len(messages), resp.text

    def search(self, **query: Any) -> Any:
        resp = self.api.get("/messages?" + urlencode(query), token=self.token)
        assert resp.status == 200, resp.text
        return resp.json

    def ids(self, **query: Any) -> list[str]:
        return [m["id"] for m in self.search(**query)["messages"]]

    def all_pages(self, **query: Any) -> tuple[list[str], int]:
        """Every match, following next_cursor; and how many calls it took."""
        found: list[str] = []
        cursor = None
        for calls in itertools.count(1):
            page = self.search(**query, **({"cursor": cursor} if cursor else {}))
            found += [m["id"] for m in page["messages"]]
            cursor = page["next_cursor"]
            if not cursor:
                return found, calls
            assert calls < 50, "paging does not end"
        raise AssertionError("unreachable")


@pytest.fixture
def acme(shared_stack: tuple[Stack, ApiClient]) -> Iterator[Tenant]:
    clock.reset()
    yield Tenant(shared_stack, "acme")
    clock.reset()


def test_search_by_recipient_finds_to_cc_and_bcc_in_any_case(acme: Tenant) -> None:
    acme.add(message("m1", to=["ann@example.org"]), message("m2", to=["x@example.org"], cc=["Ann@Example.org"]),
             message("m3", to=["x@example.org"], bcc=["ANN@example.org"]), message("m4", to=["bob@example.org"]))
    assert acme.ids(recipient="ann@example.org") == ["m1", "m2", "m3"]
    assert acme.ids(recipient="ANN@EXAMPLE.ORG") == ["m1", "m2", "m3"]
    assert acme.ids(recipient="nobody@example.org") == []
    [record] = acme.search(recipient="bob@example.org")["messages"]
    assert record["message"]["to"] == ["bob@example.org"]  # the records are whole, as in any listing


def test_search_by_recipient_reads_that_address_alone_not_the_history(
        acme: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    acme.add(*[message(f"other{i}", to=[f"other{i}@example.org"]) for i in range(40)])
    acme.add(message("mine1", to=["ann@example.org"]), message("mine2", cc=["ann@example.org"]))
    read: list[int] = []
    original = MailRepository._batch_get

    def counting(self: MailRepository, keys: Any, **kw: Any) -> Any:
        read.append(len(keys))
        return original(self, keys, **kw)

    monkeypatch.setattr(MailRepository, "_batch_get", counting)
    assert acme.ids(recipient="ann@example.org") == ["mine1", "mine2"]
    assert sum(read) <= 2 + 2 + 2  # tenant check, then the two states and their two payloads


def test_search_by_creation_time_range_is_inclusive_at_both_ends(acme: Tenant) -> None:
    stamps = {}
    for mid in ("jan", "feb", "mar", "apr"):
        stamps[mid] = clock.now_ts()  # created at this second, or within the next few
        acme.add(message(mid, to=["ann@example.org"] if mid != "mar" else ["bob@example.org"]))
        clock.advance(3600)
    assert acme.ids(since_ts=stamps["feb"], until_ts=stamps["mar"] + 60) == ["feb", "mar"]
    assert acme.ids(since_ts=stamps["mar"]) == ["mar", "apr"]
    assert acme.ids(until_ts=stamps["jan"] + 60) == ["jan"]
    assert acme.ids(since_ts=stamps["jan"] + 60, until_ts=stamps["feb"] - 1) == []
    assert acme.ids(since_ts=stamps["feb"], recipient="ann@example.org") == ["feb", "apr"]
    assert acme.ids(since_ts=stamps["apr"] + 60) == []


def test_search_by_batch_code_and_subject_text(acme: Tenant) -> None:
    acme.add(message("m1", batch_code="spring", subject="Spring SALE: 20% off"),
             message("m2", batch_code="spring", subject="Your invoice"),
             message("m3", batch_code="autumn", subject="Autumn sale"),
             message("m4", subject="sale  ends today"))
    assert acme.ids(batch_code="spring") == ["m1", "m2"]
    assert acme.ids(subject="sale") == ["m1", "m3", "m4"]
    assert acme.ids(subject="SALE ENDS") == ["m4"]  # case and runs of spaces do not matter
    assert acme.ids(subject="sale", batch_code="spring") == ["m1"]
    assert acme.ids(subject="sale", recipient="rcpt@example.org", batch_code="autumn") == ["m3"]


@pytest.mark.parametrize("query", [{"recipient": "ann@example.org"}, {"subject": "match"},
                                   {"batch_code": "b1"}, {"since_ts": 0}])
def test_paging_through_search_results_returns_every_match_once_in_order(acme: Tenant, query: dict) -> None:
    wanted = []
    for i in range(12):
        hit = i % 2 == 0
        acme.add(message(f"m{i:02d}", to=["ann@example.org" if hit else "bob@example.org"],
                         subject="a match" if hit else "other", batch_code="b1" if hit else "b2"))
        if hit or "since_ts" in query:
            wanted.append(f"m{i:02d}")
    found, calls = acme.all_pages(limit=2, **query)
    assert found == wanted
    assert calls >= len(wanted) // 2


def test_a_filtered_page_reads_a_bounded_number_of_states_and_says_where_to_go_on(
        acme: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.usecases import messages

    monkeypatch.setattr(messages, "SEARCH_READ_LIMIT", 5)
    acme.add(*[message(f"m{i:02d}", subject="rare" if i == 11 else "common") for i in range(12)])
    first = acme.search(subject="rare", limit=1)
    assert first["messages"] == [] and first["next_cursor"]  # five read, none matched: go on from there
    found, _calls = acme.all_pages(subject="rare", limit=1)
    assert found == ["m11"]


def test_a_replaced_or_deleted_message_is_not_found_by_its_old_recipient(acme: Tenant) -> None:
    acme.add(message("m1", to=["ann@example.org"]), message("m2", to=["ann@example.org"]))
    clock.advance(1)
    acme.add(message("m1", to=["bob@example.org"]))  # still pending: replaced, with a new recipient
    resp = acme.api.post("/commands/delete-messages", token=acme.token, body={"ids": ["m2"]})
    assert resp.status == 200 and resp.json["removed"] == 1
    assert acme.ids(recipient="ann@example.org") == []
    assert acme.ids(recipient="bob@example.org") == ["m1"]


def test_a_cursor_from_another_search_is_refused(acme: Tenant) -> None:
    acme.add(*[message(f"m{i}", to=["ann@example.org"]) for i in range(3)])
    cursor = acme.search(recipient="ann@example.org", limit=1)["next_cursor"]
    for query in ({"recipient": "bob@example.org"}, {}, {"recipient": "ann@example.org", "since_ts": 10**9 * 5}):
        resp = acme.api.get("/messages?" + urlencode({**query, "cursor": cursor}), token=acme.token)
        assert resp.status == 422, (query, resp.text)


@pytest.mark.parametrize("query", [{"since_ts": 20, "until_ts": 10}, {"recipient": "not-an-address"},
                                   {"since_ts": -1}, {"subject": ""}, {"batch_code": "x" * 65}])
def test_invalid_search_parameters_are_a_422(acme: Tenant, query: dict) -> None:
    resp = acme.api.get("/messages?" + urlencode(query), token=acme.token)
    assert resp.status == 422, resp.text


def test_another_tenant_finds_nothing_of_acmes_and_cannot_search_as_acme(
        acme: Tenant, shared_stack: tuple[Stack, ApiClient]) -> None:
    beta = Tenant(shared_stack, "beta")
    acme.add(message("m1", to=["ann@example.org"]))
    assert beta.ids(recipient="ann@example.org") == []
    resp = beta.api.get(f"/messages?tenant_id={acme.id}&recipient=ann@example.org", token=beta.token)
    assert resp.status == 403
    admin = beta.api.get(f"/messages?tenant_id={acme.id}&recipient=ann@example.org", token=ADMIN_TOKEN)
    assert [m["id"] for m in admin.json["messages"]] == ["m1"]


def test_deleting_the_tenant_removes_its_recipient_index(acme: Tenant) -> None:
    acme.add(message("m1", to=["ann@example.org"], cc=["bob@example.org"]))
    shards = {recipient_shard_pk(acme.id, shard) for shard in range(RECIPIENT_SHARDS)}
    index = [i for i in acme.stack.raw_items() if i["pk"]["S"] in shards]
    assert len(index) == 2
    assert acme.api.delete(f"/tenant/{acme.id}", token=ADMIN_TOKEN).status == 200
    left = {i["pk"]["S"] for i in acme.stack.raw_items() if i["pk"]["S"].startswith(tenant_pk(acme.id) + "#")}
    assert left == {log_pk(acme.id)}  # the command log alone stays, as an audit trail
