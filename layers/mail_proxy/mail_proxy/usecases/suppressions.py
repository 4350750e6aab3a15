"""The per-tenant suppression list: addresses the tenant's messages are not sent to.

A hard bounce adds the bounced address; a one-click unsubscribe adds the recipient who clicked, for all the
tenant's messages or, when the link names a list, only for messages of that ``batch_code`` (the entry's
``lists``; a later entry for all messages replaces it); the tenant adds and removes entries through the
API. Every entry
expires (default ``MAIL_PROXY_SUPPRESSION_DAYS``, 365 days; the table's TTL deletes it later, and reads
ignore it from the moment it expires). The sender checks a batch's recipients with one BatchGetItem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain import clock
from mail_proxy.domain.principal import Principal
from mail_proxy.domain.tenant_models import SuppressionCreate, SuppressionView
from mail_proxy.errors import InvalidInputError, NotFoundError
from mail_proxy.usecases import audit

DEFAULT_SUPPRESSION_DAYS = 365
MAX_LIST_LIMIT = 1000
SOURCE_MANUAL = "manual"
SOURCE_HARD_BOUNCE = "hard_bounce"
SOURCE_UNSUBSCRIBE = "unsubscribe"
SOURCE_COMPLAINT = "complaint"


def suppression_view(item: dict[str, Any]) -> SuppressionView:
    return SuppressionView(address=item["address"], reason=item.get("reason"), source=item.get("source", "manual"),
                           created_ts=int(item.get("created_ts") or 0), expires_ts=item.get("expires_at"),
                           message_id=item.get("message_id"),
                           lists=sorted(item["lists"]) if item.get("lists") else None)


def suppression_applies(entry: dict[str, Any] | None, batch_code: str | None) -> bool:
    """Whether a live suppression entry blocks a message of ``batch_code``: every message, or, for an entry
    scoped to lists, the messages of those batch codes."""
    if entry is None:
        return False
    lists = entry.get("lists")
    return not lists or (batch_code is not None and batch_code in lists)


class SuppressionList:
    def __init__(self, repo: MailRepository, *, days: int = DEFAULT_SUPPRESSION_DAYS) -> None:
        self.repo = repo
        self.seconds = days * 24 * 3600

    # -------------------------------------------------------------------------------------- the API

    def add(self, principal: Principal, request: SuppressionCreate) -> None:
        tenant_id = principal.require_tenant(request.tenant_id)
        self.repo.require_tenant(tenant_id)
        now = clock.now_ts()
        expires = request.expires_ts if request.expires_ts is not None else now + self.seconds
        if expires <= now:
            raise InvalidInputError("expires_ts must be in the future")
        self.repo.mark_has_suppressions(tenant_id)
        self.repo.put_suppression(tenant_id, {"address": request.address, "reason": request.reason,
                                              "source": SOURCE_MANUAL, "created_ts": now, "expires_at": expires})
        audit.record(self.repo, command="add_suppression", tenant_id=tenant_id,
                     payload=request.model_dump(exclude_none=True),
                     message=f"Address suppressed for tenant '{tenant_id}'", status=201)

    def list_entries(self, principal: Principal, tenant_id: str | None, *, limit: int, after: str | None
                     ) -> tuple[list[SuppressionView], str | None]:
        tid = principal.require_tenant(tenant_id)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        items, next_after = self.repo.list_suppressions(tid, limit=limit, after=after)
        return [suppression_view(i) for i in items], next_after

    def remove(self, principal: Principal, address: str, tenant_id: str | None) -> None:
        tid = principal.require_tenant(tenant_id)
        if not self.repo.delete_suppression(tid, address):
            raise NotFoundError(f"address '{address}' is not suppressed")
        audit.record(self.repo, command="delete_suppression", tenant_id=tid, payload={"address": address},
                     message=f"Address no longer suppressed for tenant '{tid}'")

    # -------------------------------------------------------------------------------------- bounces

    def suppress_bounced(self, tenant_id: str, addresses: Iterable[str], *, message_id: str, reason: str,
                         source: str = SOURCE_HARD_BOUNCE) -> int:
        """Suppress hard-bounced (or complaining, ``source="complaint"``) addresses; a longer-lasting entry
        (a manual one) is kept as it is."""
        now = clock.now_ts()
        count = 0
        wanted = list(dict.fromkeys(a.lower() for a in addresses))
        if wanted:
            self.repo.mark_has_suppressions(tenant_id)
        for address in wanted:
            self.repo.put_suppression(tenant_id, {"address": address, "reason": reason[:500],
                                                  "source": source, "created_ts": now,
                                                  "expires_at": now + self.seconds, "message_id": message_id},
                                      keep_longer=True)
            count += 1
        return count

    # -------------------------------------------------------------------------------------- unsubscribes

    def suppress_unsubscribed(self, tenant_id: str, address: str, *, list_id: str | None, message_id: str) -> None:
        """A recipient's one-click unsubscribe: for every message of the tenant, or for the list's only
        (an entry for every message already there stays as it is). Repeating it changes nothing but the expiry."""
        now = clock.now_ts()
        self.repo.mark_has_suppressions(tenant_id)
        entry = {"address": address.lower(), "reason": "unsubscribed (one-click)", "source": SOURCE_UNSUBSCRIBE,
                 "created_ts": now, "expires_at": now + self.seconds, "message_id": message_id}
        if list_id is None:
            self.repo.put_suppression(tenant_id, entry, keep_longer=True)
        else:
            self.repo.add_suppressed_list(tenant_id, entry, list_id)
