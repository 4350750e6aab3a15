"""``MailRepository``: the table's one entry point, composed of each aggregate's items.

Each part knows its own items (``tenants``, ``accounts``, ``messages``, ...), all of them build keys with
``keys`` only; what spans aggregates (a tenant's deletion takes its accounts, messages and recipient index
with it) is here.
"""

from __future__ import annotations

from mail_proxy.adapters.dynamodb.accounts import AccountItems
from mail_proxy.adapters.dynamodb.command_log import CommandLog
from mail_proxy.adapters.dynamodb.inbound import InboundItems
from mail_proxy.adapters.dynamodb.keys import (
    RECIPIENT_SHARDS,
    TENANT_SK,
    message_id_from_pk,
    messages_gsi1pk,
    recipient_shard_pk,
    tenant_pk,
)
from mail_proxy.adapters.dynamodb.message_listing import MessageListing
from mail_proxy.adapters.dynamodb.messages import MessageItems
from mail_proxy.adapters.dynamodb.prometheus_counters import PrometheusCounters
from mail_proxy.adapters.dynamodb.reports import ReportItems
from mail_proxy.adapters.dynamodb.reputation import ReputationCounters
from mail_proxy.adapters.dynamodb.scheduling import DueIndex
from mail_proxy.adapters.dynamodb.sending_windows import SendingWindows
from mail_proxy.adapters.dynamodb.suppressions import SuppressionItems
from mail_proxy.adapters.dynamodb.tenants import TenantItems
from mail_proxy.adapters.dynamodb.transitions import MessageTransitions


class MailRepository(TenantItems, AccountItems, MessageItems, MessageListing, MessageTransitions, DueIndex,
                     SendingWindows, ReportItems, InboundItems, SuppressionItems, ReputationCounters, CommandLog,
                     PrometheusCounters):
    """Data access for tenants, accounts, messages, their bookkeeping and the command log."""

    def delete_tenant(self, tenant_id: str) -> int:
        """Remove the tenant, its accounts and its messages; the command log stays as an audit trail."""
        self.require_tenant(tenant_id)
        keys: list[tuple[str, str]] = []
        for page in self._paginate_query(
            KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": tenant_pk(tenant_id)}},
            ProjectionExpression="pk, sk",
        ):
            keys.extend((i["pk"]["S"], i["sk"]["S"]) for i in page)
        removed = 0
        cursor = None
        while True:
            msg_keys, cursor = self._query_keys("ByTenant", "gsi1pk", messages_gsi1pk(tenant_id),
                                                 limit=500, start=cursor)
            removed += self.delete_messages(tenant_id, [message_id_from_pk(k["pk"]["S"]) for k in msg_keys])
            if not cursor:
                break
        for shard in range(RECIPIENT_SHARDS):  # the recipient index holds addresses: it goes with the tenant
            for page in self._paginate_query(
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": recipient_shard_pk(tenant_id, shard)}},
                ProjectionExpression="pk, sk",
            ):
                keys.extend((i["pk"]["S"], i["sk"]["S"]) for i in page)
        # the tenant item last, so a failure half-way can be retried with the same call
        keys.sort(key=lambda k: k[1] == TENANT_SK)
        self._batch_delete(keys)
        return removed
