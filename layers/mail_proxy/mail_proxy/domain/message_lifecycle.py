"""A message's life as a state machine: every transition names the state it expects and what it changes.

Pure (no AWS, no I/O): :class:`MessageState` is a message's state item as the rules see it, and each of its
transitions is a method returning a :class:`Transition`, which the repository applies as one conditional
write, so a stale sender, a concurrent delete or a replacement can never be overwritten.
:meth:`MessageState.after` says what that write means without a table (in-memory stores and unit tests use
it; the repository's condition expression is the same rule in DynamoDB's words). The transitions::

    pending / deferred ──claim──► sending ──accepted──► sent
          ▲    │                     │ ──failed────► error
          │    │ (before sending)    │ ──retry─────► deferred (due later)
          │    └─failed / retry /    │ ──release───► pending (handed back, never sent)
          │      hold                └─(lease expired) abandoned: error if the SMTP transaction had
          └──────── released from hold                   started (outcome unknown), else pending

Why the ``smtp`` stage: a sender claims a message only right before its SMTP transaction, so a claim whose
lease ran out means the sender died during that transaction or before it could record the answer. The
server may have accepted the message; sending it again could deliver it twice, so it ends in ``error`` with
a reason that says so (the application decides). A claim taken only to record a failure has another stage and
is simply handed back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mail_proxy.domain.models import MessageStatus

REFUSALS_KEPT = 10  # refused recipients named in an event; the rest are counted
REPLY_CHARS = 200  # an SMTP reply kept in an event is cut to this
DESCRIPTION_CHARS = 1000
WARNINGS_KEPT = 20
STAGE_SMTP = "smtp"  # the claim was taken for an SMTP transaction
STAGE_OUTCOME = "outcome"  # the claim was taken only to record an outcome decided before sending
OUTCOME_UNKNOWN = ("delivery outcome unknown: the sender stopped during the SMTP transaction, so the server "
                   "may have accepted the message; it is not sent again, to never deliver it twice")
WAITING = (MessageStatus.PENDING, MessageStatus.DEFERRED)
_LEASE = ("lease_owner", "lease_until", "lease_stage")


class TransitionRefused(Exception):
    """The state is not the one the transition expects (the conditional write would not apply)."""

    def __init__(self, transition: str, status: MessageStatus) -> None:
        super().__init__(f"{transition} refused: the message is {status}, or changed since it was read")
        self.transition = transition
        self.status = status


@dataclass(frozen=True)
class Expectation:
    """What the stored state must be for a transition to apply (all given parts must hold)."""

    statuses: tuple[MessageStatus, ...]
    payload_version: str | None = None
    lease_owner: str | None = None
    attempts: int | None = None  # optimistic check for transitions made without a claim
    due_by: int | None = None  # deferred messages: deferred_ts at or before this
    lease_expired_by: int | None = None  # sending messages: lease_until before this

    def admits(self, state: MessageState) -> bool:
        """Whether ``state`` is one this transition may be applied to (the write's condition, in Python)."""
        return (state.status in self.statuses
                and (self.payload_version is None or state.payload_version == self.payload_version)
                and (self.lease_owner is None or state.lease_owner == self.lease_owner)
                and (self.attempts is None or state.attempts == self.attempts)
                and (self.due_by is None or state.status != MessageStatus.DEFERRED or state.deferred_ts is None
                     or state.deferred_ts <= self.due_by)
                and (self.lease_expired_by is None
                     or (state.lease_until is not None and state.lease_until < self.lease_expired_by)))


@dataclass(frozen=True)
class Transition:
    """One conditional write of a message's state item."""

    name: str
    expect: Expectation
    sets: Mapping[str, Any] = field(default_factory=dict)
    removes: tuple[str, ...] = ()
    event: Mapping[str, Any] | None = None
    count_attempt: bool = False
    due_ts: int | None = None  # set the next check time in the due index
    leaves_due_index: bool = False  # remove the message from the due index (final, or handed to SQS)
    hold: bool = False  # move it to the tenant's held messages (out of the due index)

    @property
    def status(self) -> MessageStatus | None:
        value = self.sets.get("status")
        return MessageStatus(value) if value is not None else None


@dataclass(frozen=True)
class MessageState:
    """A message's state as read: what its transitions are conditioned on, and the transitions themselves."""

    message_id: str
    status: MessageStatus
    payload_version: str | None
    attempts: int
    lease_owner: str | None = None
    lease_until: int | None = None
    lease_stage: str | None = None
    deferred_ts: int | None = None
    priority: int = 2
    batch_code: str | None = None
    account_id: str | None = None
    created_ms: int | None = None
    watched: bool = False  # in the due index or among the held messages: the scheduler sees it already

    @classmethod
    def from_item(cls, state: Mapping[str, Any]) -> MessageState:
        """The typed state of a state item as the repository returns it."""
        return cls(
            message_id=state["id"], status=MessageStatus(state["status"]),
            payload_version=state.get("payload_version"), attempts=int(state.get("attempts") or 0),
            lease_owner=state.get("lease_owner"), lease_until=_int(state.get("lease_until")),
            lease_stage=state.get("lease_stage"), deferred_ts=_int(state.get("deferred_ts")),
            priority=int(state["priority"]) if state.get("priority") is not None else 2,
            batch_code=state.get("batch_code"),
            account_id=state.get("account_id"), created_ms=_int(state.get("created_ms")),
            watched=bool(state.get("due_pk")),
        )

    of = from_item  # the name callers written against ``Seen`` use

    @property
    def next_attempt(self) -> int:
        """The number of the attempt being made now: the one place an attempt is counted."""
        return self.attempts + 1

    def claimable(self, now: int) -> bool:
        return self.status == MessageStatus.PENDING or (
            self.status == MessageStatus.DEFERRED and (self.deferred_ts is None or self.deferred_ts <= now))

    def lease_expired(self, now: int) -> bool:
        return self.status == MessageStatus.SENDING and (self.lease_until or 0) < now

    def without_claim(self) -> Expectation:
        """Unchanged since it was read: same status, content and attempt count."""
        return Expectation(statuses=(self.status,), payload_version=self.payload_version, attempts=self.attempts)

    def claimed_by(self, owner: str) -> Expectation:
        return Expectation(statuses=(MessageStatus.SENDING,), payload_version=self.payload_version, lease_owner=owner)

    def after(self, transition: Transition) -> MessageState:
        """The state once ``transition`` is written; :class:`TransitionRefused` if its expectation fails."""
        if not transition.expect.admits(self):
            raise TransitionRefused(transition.name, self.status)
        changes: dict[str, Any] = {name: None for name in transition.removes if name in _TYPED}
        changes.update({name: value for name, value in transition.sets.items() if name in _TYPED})
        if "status" in changes:
            changes["status"] = MessageStatus(changes["status"])
        if transition.count_attempt:
            changes["attempts"] = self.next_attempt
        if transition.hold or transition.due_ts is not None:
            changes["watched"] = True
        elif transition.leaves_due_index:
            changes["watched"] = False
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------ transitions

    def claim(self, *, owner: str, lease_until: int, now: int, stage: str) -> Transition:
        """Take a waiting message; only one sender can, and only while nobody changed it since it was read."""
        return Transition(
            "claim",
            Expectation(statuses=WAITING, payload_version=self.payload_version, due_by=now),
            sets={"status": MessageStatus.SENDING, "lease_owner": owner, "lease_until": lease_until,
                  "lease_stage": stage},
        )

    def accepted(self, *, owner: str, now: int, event_id: str, refused: Mapping[str, Any] | None = None,
                 warnings: list[str] | None = None, suppressed: list[str] | None = None,
                 expires_at: int | None = None) -> Transition:
        """The server answered 250 to DATA: recorded at once, before anything else happens."""
        metadata: dict[str, Any] = summarise_refusals(refused)
        if warnings:
            metadata["warnings"] = [w[:REPLY_CHARS] for w in warnings[:WARNINGS_KEPT]]
        if suppressed:
            metadata["suppressed"] = suppressed[:REFUSALS_KEPT]
            if len(suppressed) > REFUSALS_KEPT:
                metadata["suppressed_count"] = len(suppressed)
        sets: dict[str, Any] = {"status": MessageStatus.SENT, "sent_ts": now}
        if expires_at is not None:
            sets["expires_at"] = expires_at
        return Transition("accepted", self.claimed_by(owner), sets=sets, count_attempt=True,
                          removes=(*_LEASE, "error", "deferred_ts"),
                          event=event("sent", "sent", now, event_id, metadata), leaves_due_index=True)

    def accepted_minimal(self, *, owner: str, now: int, event_id: str, expires_at: int | None = None
                         ) -> Transition:
        """The smallest write that still says "sent": used when the full outcome cannot be written."""
        return self.accepted(owner=owner, now=now, event_id=event_id, expires_at=expires_at)

    def failed(self, reason: str, *, now: int, event_id: str, owner: str | None, code: int | None = None,
               attempted: bool = True, metadata: Mapping[str, Any] | None = None, expires_at: int | None = None
               ) -> Transition:
        """A permanent failure: the message ends in ``error`` with its reason."""
        details = dict(metadata or {})
        if code:
            details["smtp_code"] = code
        sets: dict[str, Any] = {"status": MessageStatus.ERROR, "error": reason[:DESCRIPTION_CHARS], "error_ts": now}
        if expires_at is not None:
            sets["expires_at"] = expires_at
        return Transition("failed", self.claimed_by(owner) if owner else self.without_claim(), sets=sets,
                          removes=(*_LEASE, "deferred_ts"), count_attempt=attempted,
                          event=event("error", reason, now, event_id, details or None), leaves_due_index=True)

    def retry_later(self, reason: str, *, until: int, now: int, event_id: str, owner: str | None,
                    code: int | None = None, attempted: bool = True, due_ts: int | None = None) -> Transition:
        """A temporary failure (or a rate limit): ``deferred`` until ``until``; ``due_ts`` is when the scheduler
        looks again (later than ``until`` when an SQS delay already carries the retry)."""
        metadata: dict[str, Any] = {"retry_at": until, "attempt": self.next_attempt if attempted else self.attempts}
        if code:
            metadata["smtp_code"] = code
        return Transition("retry_later", self.claimed_by(owner) if owner else self.without_claim(),
                          sets={"status": MessageStatus.DEFERRED, "deferred_ts": until},
                          removes=(*_LEASE, "error"), count_attempt=attempted,
                          event=event("deferred", reason, now, event_id, metadata),
                          due_ts=due_ts if due_ts is not None else until)

    def release(self, *, owner: str, due_ts: int) -> Transition:
        """Hand a claimed message back untouched (never sent), to be queued again at ``due_ts``."""
        return Transition("release", self.claimed_by(owner), sets={"status": MessageStatus.PENDING},
                          removes=_LEASE, due_ts=due_ts)

    def hold(self) -> Transition:
        """The tenant is not sending (inactive, suspended by an administrator, or the batch is suspended): the
        message waits among the held ones, out of the due index, until the scheduler releases it."""
        return Transition("hold", self.without_claim(), hold=True)

    def abandoned(self, *, now: int, event_id: str, due_ts: int, expires_at: int | None = None) -> Transition:
        """A claim whose lease ran out: the sender died. See the module docstring for why the stages differ."""
        expect = Expectation(statuses=(MessageStatus.SENDING,), payload_version=self.payload_version,
                             lease_owner=self.lease_owner, lease_expired_by=now)
        if self.lease_stage == STAGE_OUTCOME:
            return Transition("abandoned", expect, sets={"status": MessageStatus.PENDING}, removes=_LEASE,
                              due_ts=due_ts)
        sets: dict[str, Any] = {"status": MessageStatus.ERROR, "error": OUTCOME_UNKNOWN, "error_ts": now}
        if expires_at is not None:
            sets["expires_at"] = expires_at
        return Transition("abandoned", expect, sets=sets, removes=(*_LEASE, "deferred_ts"), count_attempt=True,
                          event=event("error", OUTCOME_UNKNOWN, now, event_id, {"outcome_unknown": True}),
                          leaves_due_index=True)


Seen = MessageState  # the earlier name: "the parts of a state read earlier that a transition is conditioned on"
_TYPED = frozenset(f.name for f in dataclasses.fields(MessageState)) - {"message_id", "attempts", "watched"}


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def event(kind: str, description: str, now: int, event_id: str, metadata: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    item: dict[str, Any] = {"event_id": event_id, "type": kind, "ts": now,
                            "description": description[:DESCRIPTION_CHARS]}
    if metadata:
        item["metadata"] = dict(metadata)
    return item


def summarise_refusals(refused: Mapping[str, tuple[int, bytes | str]] | None) -> dict[str, Any]:
    """Refused recipients, bounded: the count and the first few with their reply cut short, so an outcome
    with thousands of refusals still fits a small write."""
    if not refused:
        return {}
    named = {}
    for address, (code, reply) in list(refused.items())[:REFUSALS_KEPT]:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        named[address[:320]] = f"{code} {text}"[:REPLY_CHARS]
    return {"refused": named, "refused_count": len(refused)}


# ----------------------------------------------------------------- the transitions in function form (older callers)

claim = MessageState.claim
accepted = MessageState.accepted
accepted_minimal = MessageState.accepted_minimal
failed = MessageState.failed
retry_later = MessageState.retry_later
release = MessageState.release
hold = MessageState.hold
abandoned = MessageState.abandoned
