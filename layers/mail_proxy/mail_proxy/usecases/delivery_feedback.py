"""What mail coming back does to messages: bounces, PEC receipts, and PEC acceptance timeouts.

- A bounce adds a ``bounce`` event (``bounce_type`` hard|soft, ``bounce_code``, the reason as description);
  a hard bounce makes a sent message ``bounced`` and suppresses the address that bounced.
- A complaint (ARF feedback report) adds a ``complaint`` event (``feedback_type``, ``user_agent``, the
  recipients named) without changing the status, and suppresses the complaining address (source
  ``complaint``): the one the report names, else the original's only recipient.
- Hard bounces and complaints are counted for the reputation guard, which then judges the tenant's rates
  (``reputation_guard``); a returned mail applied twice is counted once.
- A PEC receipt adds ``pec_acceptance``, ``pec_delivery`` or ``pec_error``; a PEC message with no receipt
  within the acceptance timeout gets ``pec_timeout``.
- Only the mailbox owner's messages are touched: a bounce naming another tenant's message is ignored and
  logged, and a receipt's Message-ID is looked up in the owner's partition only.
- Once per returned mail: the event is appended on condition that the mail's key (a hash of its bytes) is
  not yet recorded on the message, so a mailbox read twice (a restart, a UIDVALIDITY change, two pollers)
  never adds an event twice. A message being sent right now is left alone (``BUSY``): the sender rewrites
  its whole state when it finishes, so the caller tries again at the next poll.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.secrets_config import key_ring
from mail_proxy.domain import clock
from mail_proxy.domain.models import MessageStatus
from mail_proxy.domain.reputation import BOUNCED, COMPLAINED
from mail_proxy.mail.bounce_parser import Bounce
from mail_proxy.mail.complaint_parser import Complaint
from mail_proxy.mail.inbound_mail import ProxyReference
from mail_proxy.mail.mime_addresses import envelope_recipients
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.mail.pec_parser import PecReceipt
from mail_proxy.security.proxy_tags import tag_is_valid
from mail_proxy.usecases.reputation_guard import ReputationGuard
from mail_proxy.usecases.suppressions import SOURCE_COMPLAINT, SuppressionList

PEC_SETTLING_EVENTS = frozenset({"pec_acceptance", "pec_delivery", "pec_error", "pec_timeout"})
MAX_ATTEMPTS = 3


class Applied(StrEnum):
    APPLIED = "applied"
    ALREADY = "already"  # this returned mail was applied before
    IGNORED = "ignored"  # names no message of this tenant (or a message that is gone)
    BUSY = "busy"  # the message is being sent: try again later


def receipt_key(raw: bytes) -> str:
    """What identifies a returned mail across re-reads of its mailbox (UIDs change with UIDVALIDITY)."""
    return "mail:" + hashlib.sha256(raw).hexdigest()[:32]


def _account_of(payload: dict[str, Any] | None) -> str | None:
    account = (payload or {}).get("account_id")
    return account if isinstance(account, str) and account else None


def _untagged(tenant_id: str, ref: ProxyReference) -> bool:
    """Whether a reference lacks the proxy's tag (forged, or about a message sent before tags): such
    returned mail is ignored like mail that names no message."""
    if tag_is_valid(key_ring(), ref.tenant_id, ref.message_id, ref.tag):
        return False
    logger.info("returned mail without a valid tag; ignored",
                extra={"tenant_id": tenant_id, "message_id": ref.message_id, "tag_present": ref.tag is not None})
    return True


def event_id_for(key: str, tenant_id: str, message_id: str) -> str:
    return hashlib.sha256(f"{key}|{tenant_id}|{message_id}".encode()).hexdigest()[:16]


class DeliveryFeedback:
    def __init__(self, repo: MailRepository, suppressions: SuppressionList,
                 guard: ReputationGuard | None = None) -> None:
        self.repo = repo
        self.suppressions = suppressions
        self.guard = guard or ReputationGuard(repo)

    def append_event(self, tenant_id: str, message_id: str, event: dict[str, Any], key: str) -> Applied:
        """An event about a sent message from elsewhere (an unsubscribe click), once per ``key``, on the
        message's event list and so on the report path; the message's status is left as it is."""
        outcome, _payload = self._append(tenant_id, message_id, event, key, lambda _status: None)
        return outcome

    # -------------------------------------------------------------------------------------- bounces

    def apply_bounce(self, tenant_id: str, bounce: Bounce, key: str) -> Applied:
        ref = bounce.reference
        if ref is None:
            logger.info("bounce names no message (no X-Mail-Proxy-ID); ignored",
                        extra={"tenant_id": tenant_id, "bounce_code": bounce.code})
            return Applied.IGNORED
        if ref.tenant_id != tenant_id:
            logger.warning("bounce names another tenant's message; ignored",
                           extra={"tenant_id": tenant_id, "named_tenant_id": ref.tenant_id,
                                  "message_id": ref.message_id})
            return Applied.IGNORED
        if _untagged(tenant_id, ref):
            return Applied.IGNORED
        hard = bounce.bounce_type == "hard"
        seen: list[str] = []

        def status_after(status: str) -> str | None:
            seen.append(status)
            bounced = hard and status in (MessageStatus.SENT, MessageStatus.BOUNCED)
            return MessageStatus.BOUNCED if bounced and status != MessageStatus.BOUNCED else None

        event: dict[str, Any] = {
            "type": "bounce",
            "description": bounce.reason or f"{bounce.bounce_type} bounce",
            "metadata": {"bounce_type": bounce.bounce_type, "bounce_code": bounce.code,
                         "recipients": [r.address for r in bounce.recipients if r.address][:20] or None},
        }
        outcome, payload = self._append(tenant_id, ref.message_id, event, key, status_after)
        if hard and outcome in (Applied.APPLIED, Applied.ALREADY):
            addresses = self._bounced_addresses(bounce, payload)
            self.suppressions.suppress_bounced(tenant_id, addresses, message_id=ref.message_id,
                                               reason=bounce.reason or "hard bounce")
        if outcome is Applied.APPLIED:
            logger.info("bounce recorded", extra={"tenant_id": tenant_id, "message_id": ref.message_id,
                                                  "bounce_type": bounce.bounce_type, "bounce_code": bounce.code})
            # a sent message that bounces counts once; one bounced already, or never sent, does not
            if hard and seen and seen[-1] == MessageStatus.SENT:
                self.guard.record(tenant_id, _account_of(payload), BOUNCED)
                self.guard.judge(tenant_id)
        return outcome

    # -------------------------------------------------------------------------------------- complaints

    def apply_complaint(self, tenant_id: str, complaint: Complaint, key: str) -> Applied:
        """A feedback report about one of the tenant's messages: named by its X-Mail-Proxy-ID, or by the
        Message-ID the proxy keeps for it (PEC messages)."""
        message_id: str | None = None
        ref = complaint.reference
        if ref is not None:
            if ref.tenant_id != tenant_id:
                logger.warning("complaint names another tenant's message; ignored",
                               extra={"tenant_id": tenant_id, "named_tenant_id": ref.tenant_id,
                                      "message_id": ref.message_id})
                return Applied.IGNORED
            if _untagged(tenant_id, ref):
                return Applied.IGNORED
            message_id = ref.message_id
        elif complaint.original_message_id:
            message_id = self.repo.message_id_for_header(tenant_id, complaint.original_message_id)
        if message_id is None:
            logger.info("complaint names no message of this tenant; ignored",
                        extra={"tenant_id": tenant_id, "feedback_type": complaint.feedback_type})
            return Applied.IGNORED
        metadata = {"feedback_type": complaint.feedback_type, "user_agent": complaint.user_agent,
                    "recipients": list(complaint.recipients)[:20] or None, "arrival_date": complaint.arrival_date,
                    "reported_by": complaint.reporting}
        event = {"type": "complaint",
                 "description": f"complaint ({complaint.feedback_type})"
                                + (f" reported by {complaint.reporting}" if complaint.reporting else ""),
                 "metadata": {k: v for k, v in metadata.items() if v is not None}}
        # one complaint event (and one count for the guard) per message: copies of a report, or a recipient
        # mailing it again and again, must not pause the tenant; their addresses are still suppressed
        outcome, payload = self._append(tenant_id, message_id, event, key, lambda _status: None, once="complaint")
        if outcome in (Applied.APPLIED, Applied.ALREADY):
            addresses = self._complaining_addresses(complaint, payload)
            self.suppressions.suppress_bounced(tenant_id, addresses, message_id=message_id,
                                               reason=f"complaint ({complaint.feedback_type})",
                                               source=SOURCE_COMPLAINT)
        if outcome is Applied.APPLIED:
            logger.info("complaint recorded", extra={"tenant_id": tenant_id, "message_id": message_id,
                                                     "feedback_type": complaint.feedback_type})
            self.guard.record(tenant_id, _account_of(payload), COMPLAINED)
            self.guard.judge(tenant_id)
        return outcome

    @staticmethod
    def _complaining_addresses(complaint: Complaint, payload: dict[str, Any] | None) -> list[str]:
        """The original's recipients the report names, or its only recipient when the report redacts them
        (an address the original was not sent to is never suppressed on a report's word)."""
        try:
            known = envelope_recipients(payload) if payload else []  # to, cc or bcc (a Bcc-only newsletter)
        except MalformedMessageError:
            known = []
        by_key = {a.lower(): a for a in known}
        named = [by_key[a.lower()] for a in complaint.recipients if a.lower() in by_key]
        return named or (known if len(known) == 1 else [])

    @staticmethod
    def _bounced_addresses(bounce: Bounce, payload: dict[str, Any] | None) -> list[str]:
        """The original's recipients that bounced: those the bounce names (a DSN's are trusted even when
        the original's recipients are not at hand), or the original's only recipient."""
        try:
            known = envelope_recipients(payload) if payload else []  # to, cc or bcc
        except MalformedMessageError:
            known = []
        if not known:
            return list(bounce.hard_recipients) if bounce.standard else []
        by_key = {a.lower(): a for a in known}
        named = [by_key[a.lower()] for a in bounce.hard_recipients if a.lower() in by_key]
        return named or (known if len(known) == 1 else [])

    # -------------------------------------------------------------------------------------- PEC

    def apply_pec_receipt(self, tenant_id: str, account_id: str, receipt: PecReceipt, key: str) -> Applied:
        message_id: str | None = None
        if receipt.reference is not None:
            if receipt.reference.tenant_id != tenant_id:
                logger.warning("PEC receipt names another tenant's message; ignored",
                               extra={"tenant_id": tenant_id, "named_tenant_id": receipt.reference.tenant_id,
                                      "account_id": account_id})
                return Applied.IGNORED
            message_id = receipt.reference.message_id
        elif receipt.original_message_id:
            message_id = self.repo.message_id_for_header(tenant_id, receipt.original_message_id)
        if message_id is None:
            logger.info("PEC receipt for no known message; ignored",
                        extra={"tenant_id": tenant_id, "account_id": account_id, "receipt": receipt.receipt})
            return Applied.IGNORED
        metadata = {"receipt": receipt.receipt, "recipient": receipt.recipient, "error_reason": receipt.error,
                    "pec_timestamp": receipt.timestamp, "account_id": account_id}
        event = {"type": receipt.event_type, "description": receipt.description,
                 "metadata": {k: v for k, v in metadata.items() if v is not None}}
        outcome, _payload = self._append(tenant_id, message_id, event, key, lambda _status: None)
        if outcome is Applied.APPLIED:
            logger.info("PEC receipt recorded", extra={"tenant_id": tenant_id, "message_id": message_id,
                                                       "receipt": receipt.receipt})
        return outcome

    def expire_pec_acceptance(self, tenant_id: str, timeout_seconds: int) -> int:
        """``pec_timeout`` on PEC messages sent over ``timeout_seconds`` ago without any receipt."""
        now = clock.now_ts()
        waiting = self.repo.pec_messages_sent_before(tenant_id, now - timeout_seconds)
        if not waiting:
            return 0
        states = self.repo.get_states(tenant_id, [mid for _, mid in waiting])
        expired = 0
        for sent_ts, message_id in waiting:
            state = states.get(message_id)
            settled = state is None or any(e.get("type") in PEC_SETTLING_EVENTS for e in state.get("events") or [])
            if not settled:
                minutes = timeout_seconds // 60
                event = {"type": "pec_timeout", "metadata": {"timeout_seconds": timeout_seconds},
                         "description": f"PEC acceptance not received within {minutes} minutes"}
                outcome, _payload = self._append(tenant_id, message_id, event, f"pec_timeout:{sent_ts}",
                                                 lambda _status: None)
                if outcome is Applied.BUSY:
                    continue
                expired += outcome is Applied.APPLIED
            self.repo.forget_pec_wait(tenant_id, sent_ts, message_id)
        return expired

    # -------------------------------------------------------------------------------------- plumbing

    def _append(self, tenant_id: str, message_id: str, event: dict[str, Any], key: str,
                status_after: Callable[[str], str | None], *, once: str | None = None
                ) -> tuple[Applied, dict[str, Any] | None]:
        """Append ``event`` once per ``key``; with ``once``, also not when the message already has an event of
        that type (ALREADY)."""
        for _attempt in range(MAX_ATTEMPTS):
            found = self.repo.get_message(tenant_id, message_id)
            if found is None:
                logger.info("returned mail names a message that does not exist (deleted or expired)",
                            extra={"tenant_id": tenant_id, "message_id": message_id})
                return Applied.IGNORED, None
            state, payload = found
            if key in (state.get("inbound_ids") or []) or (
                    once is not None and any(isinstance(e, dict) and e.get("type") == once
                                             for e in state.get("events") or [])):
                return Applied.ALREADY, payload
            if state["status"] == MessageStatus.SENDING:
                return Applied.BUSY, payload
            full = {"event_id": event_id_for(key, tenant_id, message_id), "ts": clock.now_ts(), **event}
            full["description"] = str(full.get("description") or "")[:1000]
            if self.repo.add_inbound_event(tenant_id, message_id, full, key, seen_status=state["status"],
                                           new_status=status_after(state["status"])):
                return Applied.APPLIED, payload
        return Applied.BUSY, None
