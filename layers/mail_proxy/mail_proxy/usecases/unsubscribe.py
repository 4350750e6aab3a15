"""What a one-click unsubscribe does (RFC 8058): the recipient named by a valid link is suppressed for the
tenant (or for the link's list only), and the message the link came in gets an ``unsubscribe`` event, which
reaches the tenant's application in its delivery reports like a bounce does.

Only the POST does this; reading the link (the GET a person's browser or a mail provider's link scanner
makes) changes nothing. A link is honoured once per recipient and list: a repeated POST (a provider retrying,
a second click) answers the same and adds no second event.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.secrets_config import key_ring
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.errors import NotFoundError
from mail_proxy.usecases import audit
from mail_proxy.usecases.delivery_feedback import Applied, DeliveryFeedback
from mail_proxy.usecases.suppressions import SuppressionList
from mail_proxy.usecases.unsubscribe_links import LINK_DAYS, UnsubscribeLink, read_token

EVENT_TYPE = "unsubscribe"


class UnsubscribeLinkExpired(NotFoundError):
    """A genuine link past its expiry."""


def event_key(link: UnsubscribeLink) -> str:
    """What makes a click the same click again: the recipient and the list (not the token's bytes)."""
    digest = hashlib.sha256(f"{link.address.lower()}|{link.list_id or ''}".encode()).hexdigest()[:32]
    return f"{EVENT_TYPE}:{digest}"


def _made_before(tenant: Tenant, link: UnsubscribeLink) -> bool:
    """Whether the link was made before its tenant was created: a deleted tenant's link, its id given again
    to a new tenant, which must not unsubscribe anybody from the new one's mail."""
    try:
        created = int(datetime.fromisoformat(str(tenant.created_at)).timestamp())
    except ValueError:  # never set (an item older than the field)
        return False
    return link.expires_ts - LINK_DAYS * 86400 < created


class OneClickUnsubscribe:
    def __init__(self, repo: MailRepository, suppressions: SuppressionList) -> None:
        self.repo = repo
        self.suppressions = suppressions

    def read(self, token: str) -> UnsubscribeLink:
        """The link a token stands for; NotFoundError for a forged one or one of a deleted tenant,
        UnsubscribeLinkExpired for one past its expiry."""
        link = read_token(key_ring(), token)
        tenant = None if link is None else self.repo.get_tenant(link.tenant_id)
        if link is None or tenant is None or _made_before(tenant, link):
            raise NotFoundError("this unsubscribe link is not valid")
        if link.expires_ts < clock.now_ts():
            raise UnsubscribeLinkExpired("this unsubscribe link has expired")
        return link

    def unsubscribe(self, link: UnsubscribeLink) -> None:
        """Suppress the recipient, then record the event on the message (while the message is kept)."""
        tenant_id = link.tenant_id
        self.suppressions.suppress_unsubscribed(tenant_id, link.address, list_id=link.list_id,
                                                message_id=link.message_id)
        metadata: dict[str, Any] = {"address": link.address}
        if link.list_id is not None:
            metadata["list"] = link.list_id
        event = {"type": EVENT_TYPE, "metadata": metadata,
                 "description": "the recipient unsubscribed (one-click)"
                                + (f" from list '{link.list_id}'" if link.list_id is not None else "")}
        outcome = DeliveryFeedback(self.repo, self.suppressions).append_event(
            tenant_id, link.message_id, event, event_key(link))
        if outcome is Applied.ALREADY:
            return
        if outcome is not Applied.APPLIED:
            logger.info("unsubscribe not recorded on its message (gone, or being written)",
                        extra={"tenant_id": tenant_id, "message_id": link.message_id, "outcome": outcome.value})
        audit.record(self.repo, command="unsubscribe", tenant_id=tenant_id,
                     payload={"message_id": link.message_id, "list": link.list_id},
                     message=f"A recipient unsubscribed from tenant '{tenant_id}'")
