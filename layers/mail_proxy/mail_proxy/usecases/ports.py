"""What the sending use cases (delivery, scheduling) need from the world, as small Protocols.

The use cases depend on these, never on the concrete adapters: ``MailRepository`` (DynamoDB), ``SendQueue``
(SQS), ``ConnectionCache`` (SMTP) and ``MessageContent`` (S3 payloads and attachments) satisfy them as they
are, and the in-memory fakes of ``tests/fixtures/fakes.py`` satisfy them for fast unit tests of the rules.
Items still travel as the repository's dicts; :class:`~mail_proxy.domain.message_lifecycle.MessageState`
is made from them at the edge of the use case.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the ports import nothing at run time, so any use case can import them
    from mail_proxy.domain.entities import Account, Tenant
    from mail_proxy.domain.message_lifecycle import Transition
    from mail_proxy.mail.smtp_replies import SendOutcome
    from mail_proxy.mail.smtp_settings import SmtpSettings
    from mail_proxy.usecases.message_content import PreparedContent


class MessageStates(Protocol):
    """Reading message states and applying their transitions (each one conditional write)."""

    def get_states(self, tenant_id: str, message_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def apply_transition(self, tenant_id: str, message_id: str, transition: Transition, *, now: int) -> bool: ...

    def set_payload_expiry(self, tenant_id: str, message_id: str, payload_version: str, expires_at: int | None
                           ) -> None: ...


class SendWindows(Protocol):
    """An account's sending windows, counted across every concurrent sender."""

    def reserve_sends(self, tenant_id: str, account_id: str, window: str, start: int, seconds: int,
                      wanted: int, limit: int) -> int: ...

    def release_sends(self, tenant_id: str, account_id: str, window: str, start: int, count: int) -> None: ...


class SendCounts(Protocol):
    """The reputation guard's hourly counters (the sender adds what it sent)."""

    def add_reputation_counts(self, tenant_id: str, bucket: int, counters: dict[str, int], *,
                              expires_at: int) -> None: ...


class DeliveryStore(MessageStates, SendWindows, SendCounts, Protocol):
    """Everything the sender reads and writes in the table."""

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    def get_account(self, tenant_id: str, account_id: str) -> Account | None: ...

    def get_payloads(self, tenant_id: str, states: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]: ...

    def suppressed(self, tenant_id: str, addresses: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def watch_pec_message(self, tenant_id: str, message_id: str, *, sent_ts: int, message_id_header: str | None,
                          expires_at: int) -> None: ...


class SchedulingStore(MessageStates, Protocol):
    """The due index, the held messages and the scheduler's checkpoints."""

    def waiting_message_keys(self, tenant_id: str, *, due_before: int | None = None) -> Iterator[tuple[int, str]]: ...

    def set_due(self, tenant_id: str, message_id: str, due_ts: int) -> None: ...

    def clear_due(self, tenant_id: str, message_id: str) -> None: ...

    def held_message_ids(self, tenant_id: str, *, limit: int, after: str | None = None) -> list[str]: ...

    def get_held_cursor(self, tenant_id: str) -> str | None: ...

    def set_held_cursor(self, tenant_id: str, after: str | None) -> None: ...

    def states_created_between(self, tenant_id: str, from_ms: int, to_ms: int, *, limit: int = 1000
                               ) -> list[dict[str, Any]]: ...

    def get_scheduler_checkpoint(self, tenant_id: str) -> int | None: ...

    def set_scheduler_checkpoint(self, tenant_id: str, checked_until_ms: int) -> None: ...


class SendLanes(Protocol):
    """The send queues, one lane per priority."""

    def enqueue(self, tenant_id: str, messages: Iterable[tuple[int, str]], delay_seconds: int = 0) -> list[str]:
        """Queue (priority, id) pairs; the ids that could not be queued."""
        ...


class SmtpSession(Protocol):
    def send(self, envelope_from: str, recipients: Sequence[str], data: bytes, *,
             deadline: float | None = None) -> SendOutcome: ...


class SmtpConnections(Protocol):
    """Open SMTP connections kept across messages (and warm invocations), one per account's settings."""

    def get(self, settings: SmtpSettings, *, deadline: float | None = None) -> SmtpSession: ...

    def discard(self, settings: SmtpSettings) -> None: ...


class ContentLoader(Protocol):
    """A stored message's payload, wherever it lives, and what it takes to render it."""

    def resolve(self, stored: dict[str, Any] | None) -> dict[str, Any] | None: ...

    def prepare(self, tenant: Tenant, message_id: str, payload: dict[str, Any], *,
                deadline: float | None = None) -> PreparedContent: ...
