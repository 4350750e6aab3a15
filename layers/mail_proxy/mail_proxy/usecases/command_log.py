"""Reading the command log (``GET /command-log`` and genro-mail-proxy's ``/command_log/*``): admin only.

Entries are written by ``audit``; a payload is stored as JSON text and read back parsed (as text if it is not
JSON).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain.principal import Principal


class CommandEntry(BaseModel):
    id: str
    command_ts: int
    command: str
    tenant_id: str | None = None
    payload: Any = None
    outcome: str | None = None
    response_status: int | None = None


def read_command_log(repo: MailRepository, who: Principal, tenant_id: str | None, *, since_ts: int | None,
                     until_ts: int | None, limit: int) -> list[CommandEntry]:
    """At most ``limit`` entries, in the order the repository lists them; for the admin only."""
    who.require_admin()
    items = repo.list_commands(tenant_id, since_ts=since_ts, until_ts=until_ts, limit=limit)
    return [_entry(item) for item in items]


def _entry(item: dict[str, Any]) -> CommandEntry:
    try:
        payload = json.loads(item.get("payload") or "null")
    except json.JSONDecodeError:
        payload = item.get("payload")
    return CommandEntry(id=item["id"], command_ts=item["command_ts"], command=item["command"],
                        tenant_id=item.get("tenant_id"), payload=payload, outcome=item.get("outcome"),
                        response_status=item.get("response_status"))
