"""The FIFO reports queue (message group = tenant) and its dead-letter queue of parked reports."""

from __future__ import annotations

import json
import time
from typing import Any

from mail_proxy import clock
from mail_proxy.aws_clients import client

REDRIVE_MAX_SECONDS = 10.0


class ReportQueue:
    def __init__(self, queue_url: str | None, parked_url: str | None) -> None:
        self.queue_url = queue_url
        self.parked_url = parked_url

    @property
    def configured(self) -> bool:
        return bool(self.queue_url)

    def send(self, tenant_id: str, body: dict[str, Any], dedup_id: str) -> None:
        if not self.queue_url:
            return
        client("sqs").send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            MessageGroupId=tenant_id,
            MessageDeduplicationId=dedup_id[:128],
        )

    def delay(self, receipt_handle: str, seconds: int) -> None:
        """Hide a received record for ``seconds`` (the backoff before its next attempt)."""
        if self.queue_url:
            client("sqs").change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                                    VisibilityTimeout=int(seconds))

    def redrive_parked(self, tenant_id: str | None = None) -> int:
        """Move parked reports (of one tenant, or all) back to the reports queue, in their order."""
        if not self.queue_url or not self.parked_url:
            return 0
        sqs = client("sqs")
        moved = 0
        deadline = time.monotonic() + REDRIVE_MAX_SECONDS
        while time.monotonic() < deadline:
            resp = sqs.receive_message(QueueUrl=self.parked_url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                       AttributeNames=["MessageGroupId"], WaitTimeSeconds=0)
            messages = resp.get("Messages", [])
            if not messages:
                break
            others = []
            for message in messages:
                group = message.get("Attributes", {}).get("MessageGroupId", "")
                if tenant_id is not None and group != tenant_id:
                    others.append(message)
                    continue
                sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"], MessageGroupId=group,
                                 MessageDeduplicationId=f"redrive-{message['MessageId']}-{clock.now_ts()}"[:128])
                sqs.delete_message(QueueUrl=self.parked_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
            for message in others:
                sqs.change_message_visibility(QueueUrl=self.parked_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)
            if others and len(others) == len(messages):
                break
        return moved
