"""Turning stored messages into what goes on the wire, before anything is claimed.

Each step fails or defers only the message it is about: missing content, a suppressed recipient list, a
message that cannot be rendered. What it produces: the payload (with the tenant's ``return_path`` and
without its suppressed recipients), the rendered and DKIM-signed bytes with their envelope, and the
account's SMTP settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mail_proxy.adapters.blob_store import BlobMissing
from mail_proxy.adapters.observability import FailureClass, logger
from mail_proxy.adapters.secrets_config import decrypt, key_ring
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Account, Tenant
from mail_proxy.domain.message_lifecycle import REFUSALS_KEPT
from mail_proxy.domain.models import MAX_RECIPIENTS
from mail_proxy.domain.rate_limits import RetryPolicy
from mail_proxy.mail.mime import build_email, message_bytes
from mail_proxy.mail.mime_addresses import envelope_recipients, envelope_sender, parse_mailboxes
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.mail.smtp_settings import SmtpSettings
from mail_proxy.security.address_guard import AddressPolicy
from mail_proxy.security.proxy_tags import make_tag
from mail_proxy.usecases.accounts import password_context
from mail_proxy.usecases.delivery_outcomes import OutcomeRecorder, PendingMessage
from mail_proxy.usecases.dkim_keys import sign_for_tenant
from mail_proxy.usecases.message_content import PreparedContent
from mail_proxy.usecases.ports import ContentLoader, DeliveryStore
from mail_proxy.usecases.suppressions import suppression_applies

LEASE_SECONDS = 180  # longer than the sender's 60 s timeout: a live sender never loses its claim


@dataclass(frozen=True)
class DeliveryConfig:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    smtp_timeout: float = 20.0
    verify_tls: bool = True
    ca_file: str | None = None
    lease_seconds: int = LEASE_SECONDS
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)  # where account hosts may resolve to


@dataclass(frozen=True)
class Outgoing:
    """One message as the server gets it: the signed bytes and the envelope."""

    data: bytes
    sender: str
    recipients: list[str]


def resolve_content(outcomes: OutcomeRecorder, content: ContentLoader, tenant: Tenant,
                    item: PendingMessage) -> None:
    """The stored payload, wherever it lives; missing content fails this message alone."""
    if item.stored_payload is None:
        outcomes.fail(tenant, item, "stored message content is missing", failure_class=FailureClass.CONTENT_MISSING,
                      attempted=False)
        return
    try:
        item.payload = content.resolve(item.stored_payload)
    except BlobMissing:
        outcomes.fail(tenant, item, "stored message content is missing", failure_class=FailureClass.CONTENT_MISSING,
                      attempted=False)
    except Exception as exc:  # S3 unavailable or throttled: it may work later
        logger.warning("stored message content unavailable; retried later",
                       extra={"tenant_id": tenant.tenant_id, "message_id": item.message_id,
                              "error": type(exc).__name__})
        outcomes.retry_or_fail(tenant, item, "stored message content is unavailable", None)


def apply_bounce_settings(outcomes: OutcomeRecorder, store: DeliveryStore, tenant: Tenant,
                          group: list[PendingMessage]) -> list[PendingMessage]:
    """The tenant's ``return_path`` where a message gives none, and its suppression list: a message whose
    every recipient is suppressed fails with ``suppressed`` unsent; suppressed recipients of the others
    are left out (and named in the sent event). One BatchGetItem for the whole group, and none for a
    tenant that never had a suppression list."""
    if tenant.return_path:
        for item in group:
            if item.payload is not None and not item.payload.get("return_path"):
                item.payload = {**item.payload, "return_path": tenant.return_path}
    recipients: dict[int, list[str]] = {}
    for index, item in enumerate(group):
        try:
            recipients[index] = envelope_recipients(item.payload) if item.payload else []
        except MalformedMessageError:
            recipients[index] = []  # rendering fails it with the reason
    wanted = {a.lower() for addresses in recipients.values() for a in addresses}
    has_list = tenant.has_suppressions  # a tenant that never had one costs no read at all
    suppressed = store.suppressed(tenant.tenant_id, wanted) if wanted and has_list else {}
    if not suppressed:
        return group
    sendable = []
    for index, item in enumerate(group):
        blocked = [a.lower() for a in recipients[index]
                   if suppression_applies(suppressed.get(a.lower()), item.state.batch_code)]
        if blocked and len(blocked) == len(recipients[index]):
            outcomes.fail(tenant, item, "suppressed", attempted=False, failure_class=FailureClass.SUPPRESSED,
                          metadata={"suppressed": blocked[:REFUSALS_KEPT]})
            continue
        item.suppressed = blocked
        sendable.append(item)
    return sendable


def render(tenant: Tenant, item: PendingMessage, prepared: PreparedContent) -> Outgoing:
    """The bytes to send, DKIM-signed last (the tenant's key for the From domain, if it has one), and the
    envelope without the suppressed recipients. Raises :class:`MalformedMessageError` for a message that can
    never be rendered."""
    tenant_id = tenant.tenant_id
    payload = prepared.payload
    sender = envelope_sender(payload)
    email = build_email(payload, tenant_id=tenant_id, message_id=item.message_id, created_ms=item.state.created_ms,
                        now=clock.now_datetime(), attachments=prepared.attachments,
                        list_unsubscribe=prepared.list_unsubscribe,
                        proxy_tag=make_tag(key_ring(), tenant_id, item.message_id))
    recipients = envelope_recipients(payload)
    data = sign_for_tenant(tenant, parse_mailboxes(payload.get("from"), field="from")[0].domain, message_bytes(email))
    if item.suppressed:
        recipients = [r for r in recipients if r.lower() not in item.suppressed]
    return Outgoing(data, sender, recipients)


def too_many_recipients(outgoing: Outgoing) -> str | None:
    """Why the envelope cannot be sent (its outcome must always fit one small write), or None."""
    if len(outgoing.recipients) > MAX_RECIPIENTS:
        return f"too many recipients: {len(outgoing.recipients)}, at most {MAX_RECIPIENTS}"
    return None


def smtp_settings(tenant_id: str, account: Account, config: DeliveryConfig) -> SmtpSettings:
    """The account's server and credentials (the password decrypted here, for this connection only)."""
    password = account.password
    return SmtpSettings(
        host=account.host,
        port=int(account.port),
        tls=account.tls_mode,
        user=account.user,
        password=decrypt(password, context=password_context(tenant_id, account.id)) if password else None,
        timeout=config.smtp_timeout,
        verify_tls=config.verify_tls,
        ca_file=config.ca_file,
        address_policy=config.address_policy,
    )
