"""Issue 11, "How it is proven": a message's whole life driven through every AWS call failing, then recovery."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mail_proxy.domain import clock
from tests.conftest import ApiClient, Stack, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.faults import (
    FAULT_KINDS,
    AwsCall,
    FaultInjector,
    FaultKind,
    FaultWorld,
    FaultySmtpSink,
    FlakyReceiver,
    seeded_smtp_policy,
)

pytestmark = pytest.mark.slow

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "SendMessage",
          "SendMessageBatch", "PutObject", "DeleteObject", "ChangeMessageVisibility", "DeleteMessage"}
ERROR_KINDS: tuple[FaultKind, ...] = ("throttle", "internal", "too_large", "timeout")
_counter = itertools.count(1)


@pytest.fixture
def injector(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> FaultInjector:
    monkeypatch.setenv("MAIL_PROXY_RETRY_DELAYS", "60,60")
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)
    injector = FaultInjector()
    injector.install(monkeypatch)
    return injector


@pytest.fixture
def sink() -> Iterator[FaultySmtpSink]:
    with FaultySmtpSink() as server:
        yield server


@pytest.fixture
def app() -> Iterator[FlakyReceiver]:
    with FlakyReceiver() as receiver:
        yield receiver


@pytest.fixture
def harness(stack: Stack, injector: FaultInjector) -> Iterator[DeliveryHarness]:
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def life(world: FaultWorld) -> None:
    """Two messages of one account in one submission (one SQS record, one account group), sent with an
    Idempotency-Key as a careful client does; then one pass of every function."""
    world.submit("m1", "m2", idempotency_key=f"{world.tenant_id}-batch-1")
    world.run()


def new_world(ctx: Ctx, prefix: str) -> FaultWorld:
    return FaultWorld(ctx.stack, ctx.api, ctx.injector, ctx.sink, ctx.app, f"{prefix}{next(_counter)}", ctx.harness)


class Ctx:
    def __init__(self, stack: Stack, api: ApiClient, injector: FaultInjector, sink: FaultySmtpSink,
                 app: FlakyReceiver, harness: DeliveryHarness) -> None:
        self.stack, self.api, self.injector = stack, api, injector
        self.sink, self.app, self.harness = sink, app, harness


@pytest.fixture
def ctx(stack: Stack, api: ApiClient, injector: FaultInjector, sink: FaultySmtpSink, app: FlakyReceiver,
        harness: DeliveryHarness) -> Ctx:
    return Ctx(stack, api, injector, sink, app, harness)


def clean_calls(ctx: Ctx) -> list[AwsCall]:
    """The AWS calls of a clean life, each function's own (the injection points)."""
    world = new_world(ctx, "clean")
    ctx.injector.reset_counts()
    life(world)
    calls = list(dict.fromkeys(c for c in ctx.injector.calls if c.scoped and c.phase != "setup"))
    world.recover()
    assert world.violations() == []
    world.close()
    return calls


def plan(calls: list[AwsCall], phase: str) -> list[tuple[AwsCall, FaultKind]]:
    """The injection points of one function.

    By default (bounded): a read fails by a kill before it, at its first ordinal; a write at its first
    ordinal gets an error (throttle, 500, item too large, timeout, or a kill before it, rotating) and at its
    last ordinal a kill after it took effect. ``FAULT_SWEEP=full``: every ordinal with every kind."""
    mine = [c for c in calls if c.phase == phase]
    if os.environ.get("FAULT_SWEEP") == "full":
        return [(c, kind) for c in mine for kind in FAULT_KINDS]
    by_op: dict[str, list[AwsCall]] = {}
    for call in mine:
        by_op.setdefault(call.operation, []).append(call)
    points: list[tuple[AwsCall, FaultKind]] = []
    rotation = itertools.cycle(ERROR_KINDS)
    for operation, group in by_op.items():
        if operation in WRITES:
            points.append((group[0], next(rotation)))
            points.append((group[-1], "kill_after"))
        else:
            points.append((group[0], "kill"))
    return points


def sweep(ctx: Ctx, phase: str) -> dict[str, list[str]]:
    """Every injection point of ``phase``: a fresh tenant lives its life with that fault, then recovers;
    the broken guarantees per point."""
    points = plan(clean_calls(ctx), phase)
    assert points, f"no AWS call of {phase} in a message's life"
    print(f"\n{phase}: {len(points)} injection points")  # shown with -s
    broken: dict[str, list[str]] = {}
    for call, kind in points:
        world = new_world(ctx, "f")
        ctx.injector.reset_counts()
        ctx.injector.fail(kind, phase=call.phase, operation=call.operation, ordinal=call.ordinal)
        life(world)
        world.recover()
        assert ctx.injector.injected, f"{kind} at {call} was never injected"
        ctx.injector.injected.clear()
        problems = world.violations()
        if problems:
            broken[f"{kind} at {call}"] = problems
        world.close()
    return broken


def test_any_api_call_failing_during_submission_loses_nothing_and_sends_nothing_twice(ctx: Ctx) -> None:
    assert sweep(ctx, "api") == {}


def test_any_sender_call_failing_never_sends_an_accepted_message_twice(ctx: Ctx) -> None:
    assert sweep(ctx, "sender") == {}


def test_any_scheduler_call_failing_loses_nothing_and_sends_nothing_twice(ctx: Ctx) -> None:
    assert sweep(ctx, "scheduler") == {}


def test_any_router_call_failing_reports_every_event_once(ctx: Ctx) -> None:
    assert sweep(ctx, "router") == {}


def test_any_reporter_call_failing_reports_every_event_once(ctx: Ctx) -> None:
    assert sweep(ctx, "reporter") == {}


def test_the_injector_fails_only_the_chosen_call_and_records_every_call(ctx: Ctx) -> None:
    world = new_world(ctx, "probe")
    ctx.injector.reset_counts()
    ctx.injector.fail("throttle", phase="api", operation="PutItem", ordinal=1)
    assert world.submit("m1", idempotency_key="k1") == 429
    [(call, kind)] = ctx.injector.injected
    assert (call.phase, call.operation, call.ordinal, kind) == ("api", "PutItem", 1, "throttle")
    assert world.submit("m1", idempotency_key="k1") == 200
    assert world.submitted["m1"].acknowledged
    ops = [c.operation for c in ctx.injector.calls if c.phase == "api"]
    # content and state written by both attempts; the recipient search index once, after the enqueue
    assert ops.count("BatchWriteItem") == 3 and ops[ops.index("SendMessageBatch") + 1] == "BatchWriteItem"
    ctx.injector.fail("kill", phase="sender", operation="UpdateItem")
    world.drain()
    assert world.kills == 1 and ctx.sink.accepted == {}
    world.recover()
    assert world.violations() == [] and ctx.sink.accepted[f"{world.tenant_id}/m1#1"] == 1
    world.close()


def test_a_throttled_batch_write_during_submission_answers_429(ctx: Ctx) -> None:
    world = new_world(ctx, "thr")
    ctx.injector.fail("throttle", phase="api", operation="BatchWriteItem")
    try:
        assert world.submit("m1") == 429
    finally:
        world.close()


# ---------------------------------------------------------------------------------------------- Hypothesis

def test_random_failure_schedules_keep_every_guarantee(ctx: Ctx) -> None:
    """Several faults at once, anywhere in a life (drawn from the calls of a clean one), with the SMTP server
    answering 421/451/550 or dropping at random and the application failing its first syncs."""
    points = clean_calls(ctx)
    examples = int(os.environ.get("FAULT_EXAMPLES", "8"))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(schedule=st.lists(st.tuples(st.sampled_from(points), st.sampled_from(FAULT_KINDS)), min_size=1,
                             max_size=4),
           smtp_seed=st.integers(0, 2**16), app_fails=st.integers(0, 3))
    def check(schedule: list[tuple[AwsCall, FaultKind]], smtp_seed: int, app_fails: int) -> None:
        world = new_world(ctx, "h")
        ctx.sink.policy = seeded_smtp_policy(smtp_seed, 0.3)
        failing = iter(range(app_fails))
        ctx.app.policy = lambda _n, _events: (503, {}) if next(failing, None) is not None else (200, {"ok": True})
        try:
            ctx.injector.reset_counts()
            for call, kind in schedule:
                ctx.injector.fail(kind, phase=call.phase, operation=call.operation, ordinal=call.ordinal)
            life(world)
            assert world.violations(final=False) == []
            world.recover(rounds=8)
            assert world.violations() == []
        finally:
            ctx.sink.policy = lambda _pid, _n: "250"
            ctx.app.policy = lambda _n, _events: (200, {"ok": True})
            world.close()

    check()
