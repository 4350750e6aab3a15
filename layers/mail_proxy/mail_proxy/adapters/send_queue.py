"""The SQS send lanes: one queue per priority, several message ids per record.

Carrying up to ten ids in one record cuts SQS requests (and, locally, keeps moto's queue short); the
sender claims each id on its own, so a record delivered twice cannot send a message twice.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from mail_proxy.adapters.aws_clients import client
from mail_proxy.adapters.observability import logger

IDS_PER_RECORD = 10
RECORDS_PER_CALL = 10


def record_body(tenant_id: str, message_ids: Sequence[str], priority: int = 2) -> str:
    return json.dumps({"tenant_id": tenant_id, "ids": list(message_ids), "priority": priority},
                      separators=(",", ":"))


def parse_record_body(body: str) -> tuple[str, list[str], int]:
    data = json.loads(body)
    tenant_id, ids, priority = data["tenant_id"], data["ids"], data.get("priority", 2)
    if (not isinstance(tenant_id, str) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
            or not isinstance(priority, int)):
        raise ValueError("send record must be {'tenant_id': str, 'ids': [str], 'priority': int}")
    return tenant_id, ids, priority


class SendQueue:
    def __init__(self, queue_urls: dict[int, str]) -> None:
        self.queue_urls = queue_urls

    @property
    def configured(self) -> bool:
        return bool(self.queue_urls)

    def url_for(self, priority: int) -> str:
        if priority in self.queue_urls:
            return self.queue_urls[priority]
        # fall back to the nearest lower-priority lane that exists
        for p in sorted(self.queue_urls, key=lambda q: (abs(q - priority), -q)):
            return self.queue_urls[p]
        raise LookupError("no send queue configured")

    def enqueue(self, tenant_id: str, messages: Iterable[tuple[int, str]], delay_seconds: int = 0) -> list[str]:
        """Queue (priority, id) pairs; returns the ids that could not be queued (the scheduler retries them)."""
        if not self.configured:
            return [mid for _, mid in messages]
        by_lane: dict[tuple[str, int], list[str]] = defaultdict(list)
        for priority, mid in messages:
            by_lane[(self.url_for(priority), priority)].append(mid)
        failed: list[str] = []
        for (url, priority), ids in by_lane.items():
            records = [ids[i : i + IDS_PER_RECORD] for i in range(0, len(ids), IDS_PER_RECORD)]
            for j in range(0, len(records), RECORDS_PER_CALL):
                chunk = records[j : j + RECORDS_PER_CALL]
                entries: list[dict[str, Any]] = [
                    {"Id": f"r{n}", "MessageBody": record_body(tenant_id, rec, priority),
                     "DelaySeconds": min(max(delay_seconds, 0), 900)}
                    for n, rec in enumerate(chunk)
                ]
                try:
                    resp = client("sqs").send_message_batch(QueueUrl=url, Entries=entries)
                except ClientError:
                    logger.exception("send queue unavailable", extra={"queue_url": url, "tenant_id": tenant_id})
                    failed.extend(mid for rec in chunk for mid in rec)
                    continue
                for failure in resp.get("Failed", []):
                    failed.extend(chunk[int(failure["Id"][1:])])
        return failed


def new_event_id() -> str:
    return uuid.uuid4().hex[:16]
