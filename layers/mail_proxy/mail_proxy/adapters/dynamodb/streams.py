"""What the table's stream says: the events a message's state item gained, the content a payload item lost."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_PREFIX, STATE_SK
from mail_proxy.adapters.dynamodb.table import unmarshal


def state_change_from_stream(record: dict[str, Any]) -> StateChange | None:
    """The events a stream record of a message STATE item added (None for any other item)."""
    data = record.get("dynamodb") or {}
    new_raw = data.get("NewImage")
    if not new_raw or new_raw.get("sk", {}).get("S") != STATE_SK:
        return None
    new = unmarshal(new_raw)
    old = unmarshal(data["OldImage"]) if data.get("OldImage") else {}
    if old.get("payload_version") and old.get("payload_version") != new.get("payload_version"):
        old = {}  # the message was replaced: its event list started over
    seen = {e.get("event_id") for e in old.get("events") or []}
    added = [(i, e) for i, e in enumerate(new.get("events") or []) if e.get("event_id") not in seen]
    if not added:
        return None
    return StateChange(tenant_id=new["tenant_id"], message_id=new["id"], status=new.get("status", ""),
                       events=added)


def removed_payload_from_stream(record: dict[str, Any]) -> dict[str, Any] | None:
    """The stored payload of a message's payload item that was deleted (replaced, deleted, or expired by its
    TTL), from its stream record; None for any other record."""
    data = record.get("dynamodb") or {}
    old = data.get("OldImage")
    if record.get("eventName") != "REMOVE" or not old or not old.get("sk", {}).get("S", "").startswith(PAYLOAD_PREFIX):
        return None
    try:
        stored = json.loads(old.get("payload", {}).get("S", ""))
    except ValueError:
        return None
    return stored if isinstance(stored, dict) else None


@dataclass(frozen=True)
class StateChange:
    tenant_id: str
    message_id: str
    status: str
    events: list[tuple[int, dict[str, Any]]]
