"""Due scheduling with in-memory fakes (``usecases.scheduling``): what is due goes on its lane in priority
order, what is not waits, held messages come back when their tenant sends again, lost ones are found."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.message_lifecycle import STAGE_OUTCOME, STAGE_SMTP
from mail_proxy.domain.models import MessageStatus
from mail_proxy.usecases.scheduling import (
    ENQUEUE_GRACE_SECONDS,
    RECONCILE_AFTER_SECONDS,
    enqueue_due,
    reconcile_unqueued,
    release_held,
    run_tick,
)
from tests.fixtures.fakes import FakeLanes, FakeStore


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    store.add_tenant("acme")
    return store


def due_now(store: FakeStore, mid: str, *, priority: int = 2, due: int | None = None, **fields: Any) -> None:
    store.add_message(mid, priority=priority, **fields)
    store.due[("acme", mid)] = clock.now_ts() if due is None else due


def test_due_messages_are_queued_in_priority_order(store: FakeStore) -> None:
    due_now(store, "low", priority=3)
    due_now(store, "urgent", priority=0)
    due_now(store, "medium", priority=2)
    lanes = FakeLanes()

    outcome = enqueue_due(store, lanes, store.tenants["acme"])

    assert outcome.queued == 3
    assert [(p, mid) for _, p, mid, _ in lanes.queued] == [(0, "urgent"), (2, "medium"), (3, "low")]


def test_a_queued_message_is_looked_at_again_only_after_the_grace_period(store: FakeStore) -> None:
    due_now(store, "m1")
    enqueue_due(store, FakeLanes(), store.tenants["acme"])

    assert store.due[("acme", "m1")] == clock.now_ts() + ENQUEUE_GRACE_SECONDS


def test_a_message_not_due_yet_is_left_waiting(store: FakeStore) -> None:
    due_now(store, "later", due=clock.now_ts() + 60, status="deferred", deferred_ts=clock.now_ts() + 60)
    lanes = FakeLanes()

    assert enqueue_due(store, lanes, store.tenants["acme"]).queued == 0
    assert lanes.queued == []


def test_a_message_the_queue_refuses_stays_due_now(store: FakeStore) -> None:
    due_now(store, "m1")
    lanes = FakeLanes(unavailable={"m1"})

    assert enqueue_due(store, lanes, store.tenants["acme"]).queued == 0
    assert store.due[("acme", "m1")] == clock.now_ts()


def test_a_final_message_leaves_the_due_index(store: FakeStore) -> None:
    due_now(store, "done", status="sent")

    enqueue_due(store, FakeLanes(), store.tenants["acme"])

    assert ("acme", "done") not in store.due


def test_a_live_claim_is_watched_until_its_lease_ends(store: FakeStore) -> None:
    lease_until = clock.now_ts() + 120
    due_now(store, "busy", status="sending", lease_owner="s1", lease_until=lease_until, lease_stage=STAGE_SMTP)
    lanes = FakeLanes()

    enqueue_due(store, lanes, store.tenants["acme"])

    assert lanes.queued == [] and store.due[("acme", "busy")] == lease_until


@pytest.mark.parametrize(("stage", "status", "queued"), [(STAGE_SMTP, MessageStatus.ERROR, []),
                                                         (STAGE_OUTCOME, MessageStatus.PENDING, ["m1"])])
def test_an_expired_claim_is_settled_by_its_stage_and_queued_only_if_never_sent(
        store: FakeStore, stage: str, status: MessageStatus, queued: list[str]) -> None:
    due_now(store, "m1", status="sending", lease_owner="dead", lease_until=clock.now_ts() - 1, lease_stage=stage)
    lanes = FakeLanes()

    enqueue_due(store, lanes, store.tenants["acme"])

    assert store.state("m1").status == status and lanes.ids() == queued


def test_a_suspended_tenants_due_messages_are_held_then_released_when_it_sends_again(store: FakeStore) -> None:
    store.change_tenant("acme", admin_suspended=True)
    due_now(store, "m1")
    lanes = FakeLanes()

    assert enqueue_due(store, lanes, store.tenants["acme"]).skipped_suspended == 1
    assert ("acme", "m1") in store.held and lanes.queued == []
    store.change_tenant("acme", admin_suspended=False)
    assert enqueue_due(store, lanes, store.tenants["acme"]).queued == 1
    assert lanes.ids() == ["m1"] and ("acme", "m1") not in store.held


def test_held_messages_of_a_still_suspended_batch_stay_held(store: FakeStore) -> None:
    store.change_tenant("acme", suspended_batches=["spring"])
    store.add_message("s1", batch_code="spring")
    store.add_message("a1", batch_code="autumn")
    store.held |= {("acme", "s1"), ("acme", "a1")}

    released = release_held(store, store.tenants["acme"], now=clock.now_ts())

    assert released == ["a1"] and ("acme", "s1") in store.held


def test_a_held_deferred_message_comes_back_due_at_its_own_time(store: FakeStore) -> None:
    later = clock.now_ts() + 3600
    store.add_message("d1", status="deferred", deferred_ts=later)
    store.held.add(("acme", "d1"))

    assert release_held(store, store.tenants["acme"], now=clock.now_ts()) == []
    assert store.due[("acme", "d1")] == later


def test_a_message_accepted_but_never_queued_is_found_once_and_queued(store: FakeStore) -> None:
    created_ms = int(clock.now() * 1000) - (RECONCILE_AFTER_SECONDS + 60) * 1000
    store.add_message("lost", created_ms=created_ms)
    store.add_message("fresh", created_ms=int(clock.now() * 1000))
    lanes = FakeLanes()

    assert reconcile_unqueued(store, lanes, store.tenants["acme"]) == 1
    assert lanes.ids() == ["lost"]
    assert reconcile_unqueued(store, lanes, store.tenants["acme"]) == 0  # the checkpoint moved past it


def test_one_tenant_failing_does_not_stop_the_tick_for_the_others(store: FakeStore) -> None:
    store.add_tenant("other")
    store.add_message("o1", tenant_id="other")
    store.due[("other", "o1")] = clock.now_ts()
    broken = Tenant("broken")  # no due index of its own: its read fails below
    real = store.waiting_message_keys

    def waiting(tenant_id: str, *, due_before: int | None = None) -> Iterator[tuple[int, str]]:
        if tenant_id == "broken":
            raise RuntimeError("table unavailable")
        return real(tenant_id, due_before=due_before)

    store.waiting_message_keys = waiting  # type: ignore[method-assign]
    lanes = FakeLanes()
    total = run_tick(store, lanes, [broken, store.tenants["other"]], lambda: 60_000)

    assert total.queued == 1 and lanes.ids() == ["o1"]
