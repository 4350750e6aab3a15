"""Issue 17, "How it is proven": a stateful property test of a message's life on the real handlers (moto).

Hypothesis interleaves client actions (submit, replace, delete, suspend, activate, run-now), delivery
(claim and SMTP answering 250/421/451/550 or dropping), functions killed at any AWS call, a client acting
while a sender holds the message, time passing past leases, scheduler ticks, report syncs answered 2xx, 5xx,
``queued`` or odd ``next_sync_after``, and parking. After every step: no message has two copies at the SMTP
sink; every accepted message is sent, in error with a reason, or visibly waiting; nothing acknowledged
disappears; per message, acknowledged events arrive in order and each event id is acknowledged once.

Bounded: ``STATE_MACHINE_EXAMPLES`` (default 20) examples of ``STATE_MACHINE_STEPS`` (default 30) steps, derandomized
and without a database (the same runs every time); ``STATE_MACHINE_SHRINK=1`` shrinks a failure (minutes).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from mail_proxy.domain import clock
from tests.conftest import ApiClient, Stack, reset_caches
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.faults import FaultInjector, FaultWorld, FaultySmtpSink, FlakyReceiver, SmtpAction

pytestmark = pytest.mark.slow

MIDS = ("m1", "m2", "m3")
KILLABLE = (("sender", "UpdateItem"), ("sender", "BatchGetItem"), ("sender", "BatchWriteItem"),
            ("scheduler", "SendMessage"), ("scheduler", "PutItem"), ("router", "SendMessage"),
            ("reporter", "UpdateItem"), ("reporter", "GetItem"))
ANSWERS: tuple[tuple[int, dict[str, Any]], ...] = (
    (200, {"ok": True}), (500, {"error": "down"}), (503, {}), (200, {"ok": True, "queued": 2}),
    (200, {"ok": True, "next_sync_after": float("nan")}), (200, {"ok": True, "next_sync_after": 1e38}),
    (200, {"ok": True, "next_sync_after": 4102444800}),  # 2100-01-01
)
_counter = itertools.count(1)


class Env:
    stack: Stack
    api: ApiClient
    injector: FaultInjector
    sink: FaultySmtpSink
    app: FlakyReceiver
    harness: DeliveryHarness


ENV = Env()


class MessageLife(RuleBasedStateMachine):
    client_acts_during_send = True  # the client deletes or replaces a message a sender holds
    odd_answers = True  # the application answers NaN, 1e38 or year-2100 next_sync_after

    def __init__(self) -> None:
        super().__init__()
        self.world = FaultWorld(ENV.stack, ENV.api, ENV.injector, ENV.sink, ENV.app, f"sm{next(_counter)}",
                                ENV.harness)
        self.smtp_answers: deque[SmtpAction] = deque()
        self.app_answers: deque[tuple[int, dict[str, Any]]] = deque()
        ENV.sink.policy = lambda _pid, _n: self.smtp_answers.popleft() if self.smtp_answers else "250"
        ENV.app.policy = lambda _n, _e: self.app_answers.popleft() if self.app_answers else (200, {"ok": True})
        ENV.injector.clear()
        ENV.injector.reset_counts()

    # --- the client ------------------------------------------------------------------------------

    @rule(mids=st.lists(st.sampled_from(MIDS), min_size=1, max_size=3, unique=True),
          batch=st.sampled_from([None, "b1"]), replace=st.booleans())
    def submit(self, mids: list[str], batch: str | None, replace: bool) -> None:
        fields = {"batch_code": batch} if batch else {}
        status = self.world.submit(*mids, new_version=replace, **fields)
        assert status == 200, f"add-messages answered {status}"

    @rule(mid=st.sampled_from(MIDS))
    def delete(self, mid: str) -> None:
        assert self.world.delete(mid) in (200, 409)

    @rule(batch=st.sampled_from(["b1", None]), suspend=st.booleans())
    def suspend_or_activate(self, batch: str | None, suspend: bool) -> None:
        path = "/commands/suspend" if suspend else "/commands/activate"
        query = f"?batch_code={batch}" if batch else ""
        resp = ENV.api.post(path + query, token=self.world.token)
        assert resp.status < 500, resp.text

    @rule()
    def run_now(self) -> None:
        resp = ENV.api.post("/commands/run-now", token=self.world.token)
        assert resp.status < 500, resp.text

    # --- the world -------------------------------------------------------------------------------

    @rule(answers=st.lists(st.sampled_from(["250", "421", "451", "550", "drop"]), min_size=1, max_size=3))
    def deliver(self, answers: list[SmtpAction]) -> None:
        self.smtp_answers.extend(answers)
        self.world.drain()
        self.smtp_answers.clear()

    @precondition(lambda self: self.client_acts_during_send)
    @rule(mid=st.sampled_from(MIDS), action=st.sampled_from(["delete", "replace", "delete and resubmit"]))
    def act_while_a_sender_holds_it(self, mid: str, action: str) -> None:
        """The client submits ``mid``; a sender claims it; right then (before its payload read, then SMTP)
        the client deletes it, replaces it, or deletes it and submits it again."""
        if self.world.submit(mid, new_version=True) != 200 or not self.world.submitted[mid].acknowledged:
            return

        def meanwhile() -> None:
            with ENV.injector.in_phase("api"):
                if action.startswith("delete"):
                    self.world.delete(mid)
                if action != "delete":
                    self.world.submit(mid, new_version=True)
        ENV.injector.fail(meanwhile, phase="sender", operation="BatchGetItem",
                          when=lambda _call, params: mid in json.dumps(params, default=str))
        self.world.drain()
        ENV.injector.clear()

    @rule(target_call=st.sampled_from(KILLABLE), after=st.booleans())
    def kill_the_next(self, target_call: tuple[str, str], after: bool) -> None:
        phase, operation = target_call
        ENV.injector.fail("kill_after" if after else "kill", phase=phase, operation=operation)

    @rule(seconds=st.sampled_from([200, 1000, 4000]))
    def time_passes(self, seconds: int) -> None:
        clock.advance(seconds)
        self.world.redeliver()

    @rule()
    def tick(self) -> None:
        self.world.tick()

    @rule(answers=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=3))
    def sync(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        if not self.odd_answers:
            answers = [a for a in answers if "next_sync_after" not in a[1]]
        self.app_answers.extend(answers)
        self.world.report(max_rounds=6)
        self.app_answers.clear()

    @rule()
    def park(self) -> None:
        """Report records reach maxReceiveCount: SQS moves them to the parked queue, in order."""
        sqs = boto3.client("sqs")
        queues = ENV.stack.resources.queues
        source, parked = queues["ReportQueue"].url, queues["ReportParkedQueue"].url
        for _ in range(5):
            got = sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10,
                                      MessageSystemAttributeNames=["MessageGroupId"]).get("Messages", [])
            if not got:
                return
            for m in got:
                sqs.send_message(QueueUrl=parked, MessageBody=m["Body"],
                                 MessageGroupId=m["Attributes"]["MessageGroupId"],
                                 MessageDeduplicationId=f"park-{m['MessageId']}")
                sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])

    # --- what must hold --------------------------------------------------------------------------

    @invariant()
    def guarantees_hold(self) -> None:
        assert self.world.violations(final=False) == []

    def teardown(self) -> None:
        try:
            self._finally_recovered()
        finally:
            self._clean_up()

    def _finally_recovered(self) -> None:
        """The last guarantee: with the faults gone, the client's suspensions lifted and time passing, every
        message it was told was accepted ends sent or in error, and its final event is acknowledged."""
        ENV.injector.clear()
        self.smtp_answers.clear()
        self.app_answers.clear()
        ENV.api.post("/commands/activate", token=self.world.token)
        ENV.api.post("/commands/activate?batch_code=b1", token=self.world.token)
        ENV.api.post("/commands/run-now", token=self.world.token)
        self.world.recover(rounds=4)
        assert self.world.violations(final=True) == []

    def _clean_up(self) -> None:
        ENV.injector.clear()
        ENV.sink.policy = lambda _pid, _n: "250"
        ENV.app.policy = lambda _n, _e: (200, {"ok": True})
        self.world.close()


@pytest.fixture
def env(stack: Stack, api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("MAIL_PROXY_RETRY_DELAYS", "60,60")
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)
    ENV.stack, ENV.api = stack, api
    ENV.injector = FaultInjector()
    ENV.injector.install(monkeypatch)
    with FaultySmtpSink() as sink, FlakyReceiver() as app:
        ENV.sink, ENV.app = sink, app
        ENV.harness = DeliveryHarness(stack)
        try:
            yield ENV
        finally:
            ENV.harness.close()


class SequentialMessageLife(MessageLife):
    """The same life without the two defects the full machine meets first (issue 17): a client acting on a
    message while a sender holds it, and odd ``next_sync_after`` answers."""

    client_acts_during_send = False
    odd_answers = False


def run(machine: type[MessageLife]) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "20")),
        stateful_step_count=int(os.environ.get("STATE_MACHINE_STEPS", "30")),
        deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.verbose if os.environ.get("STATE_MACHINE_VERBOSE") else Verbosity.normal,
        # shrinking a failing run costs minutes; STATE_MACHINE_SHRINK=1 to get the shortest interleaving
        phases=[Phase.generate, Phase.shrink] if os.environ.get("STATE_MACHINE_SHRINK") else [Phase.generate]))


def test_message_life_keeps_its_guarantees_under_any_interleaving(env: Env) -> None:
    run(MessageLife)


def test_message_life_without_concurrent_client_actions_keeps_its_guarantees(env: Env) -> None:
    run(SequentialMessageLife)
