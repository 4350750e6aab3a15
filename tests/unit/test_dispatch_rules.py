"""The sender's rules with in-memory fakes (no moto, no SMTP server): which messages go to which account,
retry or fail, rate windows, suppressions, holds, abandoned claims and the Message-ID across attempts."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from mail_proxy.adapters.observability import metrics
from mail_proxy.domain import clock
from mail_proxy.domain.message_lifecycle import STAGE_OUTCOME, STAGE_SMTP, Transition
from mail_proxy.domain.models import MessageStatus
from mail_proxy.domain.rate_limits import RetryPolicy
from mail_proxy.mail.smtp_replies import SendOutcome, SmtpPermanentError, SmtpTemporaryError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.usecases.delivery import DeliveryConfig, Dispatcher
from mail_proxy.usecases.message_content import PreparedContent
from tests.fixtures.fakes import FakeContent, FakeLanes, FakeSmtp, FakeStore


@pytest.fixture(autouse=True)
def sender_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What rendering reads (the key ring for the proxy tag); no AWS is called."""
    from mail_proxy.adapters.secrets_config import reset_secrets
    from mail_proxy.settings import reset_settings

    monkeypatch.delenv("SECRET_ID", raising=False)
    monkeypatch.setenv("TABLE_NAME", "unused-by-fakes")
    monkeypatch.setenv("MAIL_PROXY_ENCRYPTION_KEY", base64.b64encode(bytes(range(32))).decode())
    reset_settings()
    reset_secrets()
    clock.reset()
    yield
    metrics.clear_metrics()
    reset_settings()
    reset_secrets()
    clock.reset()


RETRY = RetryPolicy((60, 300), jitter=0.0)


class Sender:
    def __init__(self, retry: RetryPolicy = RETRY) -> None:
        self.store = FakeStore()
        self.lanes = FakeLanes()
        self.smtp = FakeSmtp()
        self.store.add_tenant("acme")
        self.store.add_account("acme", "main")
        self.dispatcher = Dispatcher(self.store, self.lanes, self.smtp, DeliveryConfig(retry=retry), FakeContent())
        self.dispatcher.sleep = lambda _s: None

    def deliver(self, *ids: str, remaining_ms: int = 60_000) -> None:
        self.dispatcher.new_invocation()
        self.dispatcher.deliver("acme", list(ids), remaining_ms=lambda: remaining_ms)

    def status(self, mid: str) -> MessageStatus:
        return self.store.state(mid).status


@pytest.fixture
def sender() -> Sender:
    return Sender()


# ------------------------------------------------------------------------------------------ dispatch


def test_each_message_goes_out_through_its_own_account(sender: Sender) -> None:
    sender.store.add_account("acme", "other", host="127.0.0.2")
    sender.store.add_message("a1", account_id="main")
    sender.store.add_message("b1", account_id="other")
    hosts: list[str] = []
    real_get = sender.smtp.get

    def get(settings: SmtpSettings, *, deadline: float | None = None) -> FakeSmtp:
        hosts.append(settings.host)
        return real_get(settings, deadline=deadline)

    sender.smtp.get = get  # type: ignore[method-assign]
    sender.deliver("a1", "b1")

    assert sender.smtp.proxy_ids() == ["a1", "b1"]
    assert hosts == ["127.0.0.1", "127.0.0.2"]
    assert sender.status("a1") == sender.status("b1") == MessageStatus.SENT


def test_a_missing_account_fails_its_messages_alone_unattempted(sender: Sender) -> None:
    sender.store.add_message("gone", account_id="deleted")
    sender.store.add_message("ok")
    sender.deliver("gone", "ok")

    assert sender.smtp.proxy_ids() == ["ok"]
    assert sender.status("gone") == MessageStatus.ERROR and sender.store.state("gone").attempts == 0
    assert "does not exist" in sender.store.states[("acme", "gone")]["error"]


def test_a_message_is_claimed_right_before_it_is_sent_and_recorded_right_after(sender: Sender) -> None:
    sender.store.add_message("m1")
    sender.deliver("m1")

    assert sender.store.applied == [("claim", "m1"), ("accepted", "m1")]
    assert sender.store.state("m1").attempts == 1


def test_a_message_already_sent_or_claimed_elsewhere_is_skipped(sender: Sender) -> None:
    sender.store.add_message("done", status="sent")
    sender.store.add_message("busy", status="sending", lease_owner="other", lease_until=clock.now_ts() + 100,
                             lease_stage=STAGE_SMTP)
    sender.deliver("done", "busy")

    assert sender.smtp.sent == [] and sender.store.applied == []


def test_a_message_of_a_suspended_batch_is_held_not_sent(sender: Sender) -> None:
    sender.store.change_tenant("acme", suspended_batches=["spring"])
    sender.store.add_message("m1", batch_code="spring")
    sender.deliver("m1")

    assert sender.smtp.sent == []
    assert ("acme", "m1") in sender.store.held and sender.status("m1") == MessageStatus.PENDING


def test_time_running_short_hands_the_rest_back_to_its_lane_unclaimed(sender: Sender) -> None:
    sender.store.add_message("m1", priority=1)
    sender.deliver("m1", remaining_ms=10_000)

    assert sender.smtp.sent == [] and sender.store.applied == []
    assert sender.lanes.queued == [("acme", 1, "m1", 0)]


# ------------------------------------------------------------------------------------------ retry or fail


def test_a_temporary_failure_is_retried_after_its_backoff_then_given_up(sender: Sender) -> None:
    sender.store.add_message("m1")
    sender.smtp.answers["m1"] = [SmtpTemporaryError("451 busy", code=451) for _ in range(3)]
    sender.deliver("m1")
    first = sender.store.state("m1")

    assert first.status == MessageStatus.DEFERRED and first.deferred_ts == clock.now_ts() + 60
    assert sender.lanes.queued[-1] == ("acme", 2, "m1", 60)  # a punctual retry rides on an SQS delay
    clock.advance(60)
    sender.deliver("m1")
    assert sender.store.state("m1").deferred_ts == clock.now_ts() + 300
    clock.advance(300)
    sender.deliver("m1")
    last = sender.store.states[("acme", "m1")]
    assert last["status"] == "error" and last["error"].startswith("gave up after 3 attempts: 451 busy")
    assert sender.store.state("m1").attempts == 3
    assert sender.smtp.sent == []


def test_a_permanent_failure_fails_at_once(sender: Sender) -> None:
    sender.store.add_message("m1")
    sender.smtp.answers["m1"] = [SmtpPermanentError("550 no such user", code=550)]
    sender.deliver("m1")

    state = sender.store.states[("acme", "m1")]
    assert state["status"] == "error" and state["events"][-1]["metadata"] == {"smtp_code": 550}


def test_a_server_that_cannot_be_reached_defers_the_whole_group_unclaimed(sender: Sender) -> None:
    for mid in ("m1", "m2"):
        sender.store.add_message(mid)
    sender.smtp.refuse_connections = SmtpTemporaryError("connection refused")
    sender.deliver("m1", "m2")

    assert {sender.status(m) for m in ("m1", "m2")} == {MessageStatus.DEFERRED}
    assert all(name != "claim" for name, _ in sender.store.applied)


def test_the_same_message_id_header_goes_out_on_every_attempt(sender: Sender) -> None:
    sender.store.add_message("m1")
    sender.smtp.answers["m1"] = [SmtpTemporaryError("451 busy", code=451)]
    headers: list[bytes] = []
    real_send = sender.smtp.send

    def send(envelope_from: str, recipients: Sequence[str], data: bytes, *, deadline: float | None = None
             ) -> SendOutcome:
        headers.append(next(line for line in data.split(b"\r\n") if line.startswith(b"Message-ID:")))
        return real_send(envelope_from, recipients, data, deadline=deadline)

    sender.smtp.send = send  # type: ignore[method-assign]
    sender.deliver("m1")
    clock.advance(60)
    sender.deliver("m1")

    assert sender.status("m1") == MessageStatus.SENT
    assert len(headers) == 2 and headers[0] == headers[1]


def test_an_unexpected_error_in_one_message_retries_it_and_sends_the_others(sender: Sender) -> None:
    sender.store.add_message("bad", payload={"from": "shop@example.com", "to": ["x@example.org"], "subject": "s",
                                             "body": "b", "attachments": "not a list"})
    sender.store.add_message("good")

    def explode(tenant: dict[str, Any], message_id: str, payload: dict[str, Any], *,
                deadline: float | None = None) -> PreparedContent:
        if message_id == "bad":
            raise RuntimeError("surprise")
        return FakeContent().prepare(tenant, message_id, payload)

    sender.dispatcher.content.prepare = explode  # type: ignore[method-assign]
    sender.deliver("bad", "good")

    assert sender.smtp.proxy_ids() == ["good"]
    assert sender.status("bad") == MessageStatus.DEFERRED
    assert "internal error (RuntimeError)" in sender.store.states[("acme", "bad")]["events"][-1]["description"]


# ------------------------------------------------------------------------------------------ rate windows


def test_messages_over_the_minute_limit_wait_for_the_next_window_and_unused_slots_are_given_back(
        sender: Sender) -> None:
    sender.store.change_account("acme", "main", limit_per_minute=2)
    for mid in ("m1", "m2", "m3"):
        sender.store.add_message(mid)
    sender.smtp.answers["m2"] = [SmtpPermanentError("550 rejected", code=550)]
    sender.deliver("m1", "m2", "m3")

    window_start = clock.now_ts() // 60 * 60
    assert sender.smtp.proxy_ids() == ["m1"]
    assert sender.status("m3") == MessageStatus.DEFERRED
    assert sender.store.state("m3").deferred_ts == window_start + 60 and sender.store.state("m3").attempts == 0
    assert sender.store.windows[("acme", "main", "minute", window_start)] == 1  # m2's slot came back


def test_an_account_that_rejects_over_its_limit_fails_those_messages(sender: Sender) -> None:
    sender.store.change_account("acme", "main", limit_per_hour=1, limit_behavior="reject")
    sender.store.add_message("m1")
    sender.store.add_message("m2")
    sender.deliver("m1", "m2")

    assert sender.smtp.proxy_ids() == ["m1"]
    assert sender.store.states[("acme", "m2")]["error"] == "rate_limit_exceeded: limit_per_hour=1"


def test_the_tightest_window_decides_and_the_wider_one_keeps_only_what_is_used(sender: Sender) -> None:
    sender.store.change_account("acme", "main", limit_per_minute=1, limit_per_day=10)
    sender.store.add_message("m1")
    sender.store.add_message("m2")
    sender.deliver("m1", "m2")

    day_start = clock.now_ts() // 86400 * 86400
    assert sender.smtp.proxy_ids() == ["m1"]
    assert sender.store.windows[("acme", "main", "day", day_start)] == 1


# ------------------------------------------------------------------------------------------ returned mail


def test_a_message_whose_every_recipient_is_suppressed_fails_unsent(sender: Sender) -> None:
    sender.store.change_tenant("acme", has_suppressions=True)
    sender.store.suppressions[("acme", "m1@example.org")] = {"reason": "hard_bounce"}
    sender.store.add_message("m1")
    sender.store.add_message("m2", payload={"from": "shop@example.com", "to": ["m1@example.org", "ok@example.org"],
                                            "subject": "s", "body": "b"})
    sender.deliver("m1", "m2")

    assert sender.store.states[("acme", "m1")]["error"] == "suppressed"
    assert [s.recipients for s in sender.smtp.sent] == [["ok@example.org"]]


def test_the_tenants_return_path_is_the_envelope_sender_where_a_message_gives_none(sender: Sender) -> None:
    sender.store.change_tenant("acme", return_path="bounces@returns.example.net")
    sender.store.add_message("m1")
    sender.deliver("m1")

    assert sender.smtp.sent[0].sender == "bounces@returns.example.net"


def test_a_pec_account_watches_its_sent_message_for_receipts(sender: Sender) -> None:
    sender.store.change_account("acme", "main", is_pec=True)
    sender.store.add_message("m1")
    sender.deliver("m1")

    [(tenant_id, mid, header)] = sender.store.pec_watched
    assert (tenant_id, mid) == ("acme", "m1") and header is not None and header.startswith("<")


def test_sends_are_counted_for_the_reputation_guard(sender: Sender) -> None:
    sender.store.add_message("m1")
    sender.store.add_message("m2")
    sender.deliver("m1", "m2")

    assert sum(counters.get("sent", 0) for _, _, counters in sender.store.reputation) == 2


# ------------------------------------------------------------------------------------------ abandoned and unrecorded


@pytest.mark.parametrize(("stage", "status", "queued"), [(STAGE_SMTP, MessageStatus.ERROR, []),
                                                         (STAGE_OUTCOME, MessageStatus.PENDING, ["m1"])])
def test_an_expired_claim_is_settled_by_its_stage(
        sender: Sender, stage: str, status: MessageStatus, queued: list[str]) -> None:
    sender.store.add_message("m1", status="sending", lease_owner="dead", lease_until=clock.now_ts() - 1,
                             lease_stage=stage)
    sender.deliver("m1")

    assert sender.smtp.sent == [] and sender.status("m1") == status
    assert sender.lanes.ids() == queued


def test_an_acceptance_the_table_refuses_is_written_at_the_next_invocation(sender: Sender) -> None:
    from mail_proxy.errors import ThrottledError

    sender.store.add_message("m1")
    table_down = [True]

    def busy(_mid: str, transition: Transition) -> None:
        if table_down[0] and transition.name == "accepted":
            raise ThrottledError("busy", retry_after=1)

    sender.store.on_transition = busy
    sender.deliver("m1")
    assert sender.status("m1") == MessageStatus.SENDING and sender.smtp.proxy_ids() == ["m1"]
    table_down[0] = False
    sender.dispatcher.new_invocation()
    assert sender.status("m1") == MessageStatus.SENT
