"""A message's state machine without a table: every transition, the states it is refused from, and the one
attempt count (``domain.message_lifecycle``; the repository applies the same rule as a conditional write)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.domain.message_lifecycle import (
    OUTCOME_UNKNOWN,
    STAGE_OUTCOME,
    STAGE_SMTP,
    MessageState,
    Transition,
    TransitionRefused,
)
from mail_proxy.domain.models import FINAL_STATUSES as FINAL
from mail_proxy.domain.models import MessageStatus

NOW = 1_800_000_000


def waiting(**fields: Any) -> MessageState:
    base = MessageState(message_id="m1", status=MessageStatus.PENDING, payload_version="v1", attempts=0)
    return dataclasses.replace(base, **fields)


def claimed(owner: str = "s1", stage: str = STAGE_SMTP, **fields: Any) -> MessageState:
    return waiting(**fields).after(waiting(**fields).claim(owner=owner, lease_until=NOW + 180, now=NOW, stage=stage))


# ------------------------------------------------------------------------------------------ each transition


def test_a_pending_message_is_claimed_with_a_lease_and_its_stage() -> None:
    after = claimed()

    assert (after.status, after.lease_owner, after.lease_until, after.lease_stage) == (
        MessageStatus.SENDING, "s1", NOW + 180, STAGE_SMTP)
    assert after.attempts == 0  # a claim is not an attempt


def test_a_deferred_message_is_claimable_once_due_and_not_before() -> None:
    deferred = waiting(status=MessageStatus.DEFERRED, deferred_ts=NOW + 60)

    assert not deferred.claimable(NOW)
    with pytest.raises(TransitionRefused):
        deferred.after(deferred.claim(owner="s1", lease_until=NOW + 180, now=NOW, stage=STAGE_SMTP))
    assert deferred.claimable(NOW + 60)
    assert deferred.after(deferred.claim(owner="s1", lease_until=NOW + 240, now=NOW + 60, stage=STAGE_SMTP)
                          ).status == MessageStatus.SENDING


def test_accepted_ends_sent_counts_the_attempt_and_drops_the_lease() -> None:
    state = claimed()
    transition = state.accepted(owner="s1", now=NOW, event_id="e1", refused={"x@example.org": (550, "no")},
                                warnings=["w"], suppressed=["s@example.org"], expires_at=NOW + 7)
    after = state.after(transition)

    assert after.status == MessageStatus.SENT and after.attempts == 1
    assert (after.lease_owner, after.lease_until, after.lease_stage) == (None, None, None)
    assert not after.watched
    assert transition.event is not None and transition.event["type"] == "sent"
    assert transition.event["metadata"]["refused_count"] == 1
    assert transition.sets["expires_at"] == NOW + 7


def test_failed_by_the_claim_owner_ends_in_error_with_its_reason_and_smtp_code() -> None:
    transition = claimed().failed("550 no such user", now=NOW, event_id="e1", owner="s1", code=550)
    after = claimed().after(transition)

    assert after.status == MessageStatus.ERROR and after.attempts == 1
    assert transition.sets["error"] == "550 no such user"
    assert transition.event is not None and transition.event["metadata"] == {"smtp_code": 550}


def test_failed_before_sending_counts_no_attempt_and_needs_no_claim() -> None:
    state = waiting(attempts=2)
    after = state.after(state.failed("suppressed", now=NOW, event_id="e1", owner=None, attempted=False))

    assert after.status == MessageStatus.ERROR and after.attempts == 2


def test_retry_later_defers_until_the_retry_time_and_names_the_attempt() -> None:
    state = claimed(attempts=1)
    transition = state.retry_later("451 busy", until=NOW + 300, now=NOW, event_id="e1", owner="s1", code=451,
                                   due_ts=NOW + 420)
    after = state.after(transition)

    assert (after.status, after.deferred_ts, after.attempts) == (MessageStatus.DEFERRED, NOW + 300, 2)
    assert transition.event is not None
    assert transition.event["metadata"] == {"retry_at": NOW + 300, "attempt": 2, "smtp_code": 451}
    assert transition.due_ts == NOW + 420 and after.watched


def test_a_rate_limited_deferral_is_not_an_attempt() -> None:
    state = waiting(attempts=3)
    transition = state.retry_later("rate limit", until=NOW + 60, now=NOW, event_id="e1", owner=None, attempted=False)
    after = state.after(transition)

    assert after.attempts == 3
    assert transition.event is not None and transition.event["metadata"]["attempt"] == 3
    assert transition.due_ts == NOW + 60


def test_release_hands_a_claimed_message_back_pending_and_due() -> None:
    after = claimed().after(claimed().release(owner="s1", due_ts=NOW + 900))

    assert after.status == MessageStatus.PENDING and after.lease_owner is None and after.watched
    assert after.attempts == 0


def test_hold_keeps_the_status_and_moves_the_message_out_of_the_due_index() -> None:
    state = waiting()
    transition = state.hold()
    after = state.after(transition)

    assert after.status == MessageStatus.PENDING and transition.hold and after.watched


def test_an_abandoned_smtp_claim_ends_in_error_as_outcome_unknown_and_is_never_sent_again() -> None:
    state = claimed()
    transition = state.abandoned(now=NOW + 181, event_id="e1", due_ts=NOW + 1000)
    after = state.after(transition)

    assert after.status == MessageStatus.ERROR and after.attempts == 1
    assert transition.sets["error"] == OUTCOME_UNKNOWN
    assert not after.claimable(NOW + 10_000)


def test_an_abandoned_outcome_claim_is_handed_back_pending() -> None:
    state = claimed(stage=STAGE_OUTCOME)
    after = state.after(state.abandoned(now=NOW + 181, event_id="e1", due_ts=NOW + 1000))

    assert after.status == MessageStatus.PENDING and after.attempts == 0 and after.lease_owner is None


# ------------------------------------------------------------------------------------------ refused


def refused(state: MessageState, transition: Transition) -> bool:
    try:
        state.after(transition)
    except TransitionRefused:
        return True
    return False


@pytest.mark.parametrize("status", [MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.ERROR,
                                    MessageStatus.BOUNCED])
def test_only_a_waiting_message_can_be_claimed(status: MessageStatus) -> None:
    state = waiting(status=status)

    assert refused(state, state.claim(owner="s2", lease_until=NOW + 180, now=NOW, stage=STAGE_SMTP))


def test_a_claim_is_refused_once_the_content_was_replaced() -> None:
    read = waiting(payload_version="v1")
    stored = waiting(payload_version="v2")

    assert refused(stored, read.claim(owner="s1", lease_until=NOW + 180, now=NOW, stage=STAGE_SMTP))


def test_a_stale_sender_cannot_record_an_outcome_on_someone_elses_claim() -> None:
    mine = claimed(owner="s1")
    theirs = claimed(owner="s2")

    assert refused(theirs, mine.accepted(owner="s1", now=NOW, event_id="e1"))
    assert refused(theirs, mine.failed("x", now=NOW, event_id="e1", owner="s1"))
    assert refused(theirs, mine.retry_later("x", until=NOW, now=NOW, event_id="e1", owner="s1"))
    assert refused(theirs, mine.release(owner="s1", due_ts=NOW))


def test_an_outcome_cannot_be_recorded_twice() -> None:
    state = claimed()
    sent = state.after(state.accepted(owner="s1", now=NOW, event_id="e1"))

    assert refused(sent, state.accepted(owner="s1", now=NOW, event_id="e2"))
    assert refused(sent, state.failed("late", now=NOW, event_id="e2", owner="s1"))


def test_a_live_claim_is_not_abandoned() -> None:
    state = claimed()

    assert refused(state, state.abandoned(now=NOW + 179, event_id="e1", due_ts=NOW + 1000))
    assert not state.lease_expired(NOW + 179) and state.lease_expired(NOW + 181)


def test_a_decision_made_without_a_claim_is_refused_once_another_sender_counted_an_attempt() -> None:
    read = waiting(attempts=1)
    stored = waiting(attempts=2)

    assert refused(stored, read.hold())
    assert refused(stored, read.failed("x", now=NOW, event_id="e1", owner=None, attempted=False))


def test_a_refused_transition_says_which_and_from_what() -> None:
    sent = waiting(status=MessageStatus.SENT)

    with pytest.raises(TransitionRefused, match="claim refused: the message is sent"):
        sent.after(sent.claim(owner="s1", lease_until=NOW, now=NOW, stage=STAGE_SMTP))


# ------------------------------------------------------------------------------------------ properties

STATES = st.builds(
    MessageState, message_id=st.just("m1"), status=st.sampled_from(list(MessageStatus)),
    payload_version=st.sampled_from(["v1", "v2"]), attempts=st.integers(0, 5),
    lease_owner=st.sampled_from([None, "s1", "s2"]), lease_until=st.sampled_from([None, NOW - 1, NOW + 100]),
    lease_stage=st.sampled_from([None, STAGE_SMTP, STAGE_OUTCOME]),
    deferred_ts=st.sampled_from([None, NOW - 10, NOW + 10]),
)


def transitions_of(read: MessageState) -> list[Transition]:
    return [
        read.claim(owner="s9", lease_until=NOW + 180, now=NOW, stage=STAGE_SMTP),
        read.accepted(owner="s1", now=NOW, event_id="e"),
        read.failed("x", now=NOW, event_id="e", owner="s1"),
        read.failed("x", now=NOW, event_id="e", owner=None, attempted=False),
        read.retry_later("x", until=NOW + 60, now=NOW, event_id="e", owner="s1"),
        read.retry_later("x", until=NOW + 60, now=NOW, event_id="e", owner=None, attempted=False),
        read.release(owner="s1", due_ts=NOW),
        read.hold(),
        read.abandoned(now=NOW, event_id="e", due_ts=NOW + 900),
    ]


@settings(max_examples=150, deadline=None)
@given(read=STATES, stored=STATES)
def test_every_transition_either_applies_with_at_most_one_attempt_counted_or_changes_nothing(
        read: MessageState, stored: MessageState) -> None:
    for transition in transitions_of(read):
        if not transition.expect.admits(stored):
            assert refused(stored, transition)
            continue
        after = stored.after(transition)
        assert after.attempts == stored.attempts + (1 if transition.count_attempt else 0)
        assert after.message_id == stored.message_id and after.payload_version == stored.payload_version
        if transition.status is not None:
            assert after.status == transition.status


@settings(max_examples=150, deadline=None)
@given(read=STATES, stored=STATES, final=st.sampled_from([MessageStatus.SENT, MessageStatus.ERROR,
                                                           MessageStatus.BOUNCED]))
def test_a_message_that_became_final_since_it_was_read_admits_no_transition(
        read: MessageState, stored: MessageState, final: MessageStatus) -> None:
    read = dataclasses.replace(read, status=MessageStatus.PENDING if read.status in FINAL else read.status)
    stored = dataclasses.replace(stored, status=final)
    for transition in transitions_of(read):
        assert refused(stored, transition)


@settings(max_examples=100, deadline=None)
@given(stored=STATES)
def test_a_message_in_sending_is_claimed_by_nobody_else(stored: MessageState) -> None:
    sending = dataclasses.replace(stored, status=MessageStatus.SENDING)

    assert refused(sending, sending.claim(owner="s9", lease_until=NOW + 180, now=NOW, stage=STAGE_SMTP))


def test_the_item_form_round_trips_into_the_typed_state() -> None:
    item = {"id": "m1", "status": "deferred", "attempts": 2, "payload_version": "v3", "deferred_ts": NOW,
            "priority": 1, "batch_code": "spring", "account_id": "main", "created_ms": 5, "due_pk": "x"}

    assert MessageState.from_item(item) == MessageState(
        message_id="m1", status=MessageStatus.DEFERRED, payload_version="v3", attempts=2, deferred_ts=NOW,
        priority=1, batch_code="spring", account_id="main", created_ms=5, watched=True)
