"""The domain's rule for a transition (``MessageState.after``, what the in-memory fakes apply) and the
repository's conditional write (DynamoDB, here moto) agree: the same transitions apply to the same stored
states, and leave the same state behind. Bounded Hypothesis examples, one message and one write each."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain import clock
from mail_proxy.domain.message_lifecycle import STAGE_OUTCOME, STAGE_SMTP, MessageState, Transition, TransitionRefused
from tests.conftest import Stack

_ids = itertools.count(1)
STATUSES = ("pending", "deferred", "sending", "sent", "error")


def stored_fields(now: int) -> st.SearchStrategy[dict[str, Any]]:
    """A state item as the table may hold it (without the fields the repository adds)."""
    return st.fixed_dictionaries({
        "status": st.sampled_from(STATUSES),
        "attempts": st.integers(0, 3),
        "lease_owner": st.sampled_from([None, "s1", "s2"]),
        "lease_until": st.sampled_from([None, now - 5, now + 100]),
        "lease_stage": st.sampled_from([None, STAGE_SMTP, STAGE_OUTCOME]),
        "deferred_ts": st.sampled_from([None, now - 10, now + 10]),
    })


def transition_for(choice: int, read: MessageState, now: int) -> Transition:
    return [
        lambda: read.claim(owner="s9", lease_until=now + 180, now=now, stage=STAGE_SMTP),
        lambda: read.accepted(owner="s1", now=now, event_id="e"),
        lambda: read.failed("x", now=now, event_id="e", owner="s1"),
        lambda: read.failed("x", now=now, event_id="e", owner=None, attempted=False),
        lambda: read.retry_later("x", until=now + 60, now=now, event_id="e", owner="s1"),
        lambda: read.retry_later("x", until=now + 60, now=now, event_id="e", owner=None, attempted=False),
        lambda: read.release(owner="s1", due_ts=now),
        lambda: read.hold(),
        lambda: read.abandoned(now=now, event_id="e", due_ts=now + 900),
    ][choice]()


MOSTLY = st.sampled_from([True, True, True, False])  # a state changed since it was read is the rarer case


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), choice=st.integers(0, 8), same_content=MOSTLY, same_attempts=MOSTLY)
def test_a_transition_applies_in_the_table_exactly_when_the_domain_says_and_leaves_the_same_state(
        stack: Stack, data: st.DataObject, choice: int, same_content: bool, same_attempts: bool) -> None:
    repo = MailRepository(stack.table_name)
    now = clock.now_ts()
    mid = f"agree-{next(_ids)}"
    fields = {key: value for key, value in data.draw(stored_fields(now)).items() if value is not None}
    assert repo.put_messages("acme", [({"id": mid, "created_ms": now * 1000, "priority": 2, **fields},
                                       {"subject": "s"}, None)]) == [True]
    stored = MessageState.from_item(repo.get_states("acme", [mid])[mid])
    read = dataclasses.replace(stored, payload_version=stored.payload_version if same_content else "replaced",
                               attempts=stored.attempts if same_attempts else stored.attempts + 1)
    transition = transition_for(choice, read, now)

    try:
        expected: MessageState | None = stored.after(transition)
    except TransitionRefused:
        expected = None
    applied = repo.apply_transition("acme", mid, transition, now=now)
    event(f"{transition.name} {'applied' if applied else 'refused'}")

    assert applied == (expected is not None), f"{transition.name} on {stored}"
    after = MessageState.from_item(repo.get_states("acme", [mid])[mid])
    assert after == (expected if expected is not None else stored)
