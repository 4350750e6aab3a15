"""The command log (``TENANT#t#LOG / <ms>#<id>``; every tenant's through ``ByTenant`` with
``gsi1pk=COMMANDS``), kept ``COMMAND_LOG_TTL_SECONDS`` as an audit trail.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from mail_proxy.adapters.dynamodb.keys import COMMAND_LOG_TTL_SECONDS, COMMANDS_GSI1, MAX_LOG_MS, log_pk, log_sk
from mail_proxy.adapters.dynamodb.table import Table, marshal, unmarshal
from mail_proxy.domain import clock


class CommandLog(Table):
    """Entries of the command log."""

    def log_command(self, tenant_id: str | None, command: str, payload: dict[str, Any], outcome: str,
                    status: int) -> None:
        now = clock.now()
        ms = int(now * 1000)
        entry_id = uuid.uuid4().hex[:16]
        item = {
            "pk": log_pk(tenant_id),
            "sk": log_sk(ms, entry_id),
            "gsi1pk": COMMANDS_GSI1,
            "gsi1sk": log_sk(ms, entry_id),
            "id": entry_id,
            "command_ts": int(now),
            "command": command,
            "tenant_id": tenant_id,
            "payload": json.dumps(payload, separators=(",", ":"), default=str)[:8000],
            "outcome": outcome,
            "response_status": status,
            "expires_at": int(now) + COMMAND_LOG_TTL_SECONDS,
        }
        self._call("put_item", Item=marshal(item))

    def list_commands(self, tenant_id: str | None, *, since_ts: int | None, until_ts: int | None,
                      limit: int) -> list[dict[str, Any]]:
        low = log_sk((since_ts or 0) * 1000)
        high = log_sk(MAX_LOG_MS if until_ts is None else (until_ts + 1) * 1000)
        if tenant_id:
            resp = self._call(
                "query",
                KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":p": {"S": log_pk(tenant_id)}, ":lo": {"S": low},
                                           ":hi": {"S": high}},
                ScanIndexForward=False,
                Limit=limit,
            )
            items = [unmarshal(i) for i in resp.get("Items", [])]
        else:
            resp = self._call(
                "query",
                IndexName="ByTenant",
                KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":p": {"S": COMMANDS_GSI1}, ":lo": {"S": low}, ":hi": {"S": high}},
                ScanIndexForward=False,
                Limit=limit,
            )
            order = [(i["pk"]["S"], i["sk"]["S"]) for i in resp.get("Items", [])]
            found = {(i["pk"], i["sk"]): i for i in self._batch_get(order)}
            items = [found[k] for k in order if k in found]
        return items
