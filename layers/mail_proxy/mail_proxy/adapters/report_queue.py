"""The FIFO reports queue (message group = tenant) and its dead-letter queue of parked reports."""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from mail_proxy.adapters.aws_clients import client
from mail_proxy.adapters.observability import logger
from mail_proxy.domain import clock

REDRIVE_MAX_SECONDS = 10.0
HOLD_SECONDS = 60  # other tenants' parked records stay received while a redrive reads past them


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

    def reveal(self, receipt_handle: str) -> bool:
        """Make a hidden record visible at once; False if that receipt is no longer in flight."""
        if not self.queue_url:
            return False
        try:
            client("sqs").change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                                    VisibilityTimeout=0)
        except ClientError as exc:
            logger.info("hidden report already gone", extra={"error": exc.response["Error"]["Code"]})
            return False
        return True

    def park(self, tenant_id: str, body: dict[str, Any], record_id: str) -> None:
        """Move a record that failed for too long to the parked queue (the reporter deletes the original)."""
        if not self.parked_url:
            raise RuntimeError("REPORT_PARKED_QUEUE_URL is not set: cannot park a report")
        client("sqs").send_message(
            QueueUrl=self.parked_url,
            MessageBody=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            MessageGroupId=tenant_id,
            MessageDeduplicationId=f"park-{record_id}"[:128],
        )

    def redrive_parked(self, tenant_id: str | None = None) -> int:
        """Move parked reports (of one tenant, or all) back to the reports queue, in their order.

        Other tenants' records are kept received (hidden) until the pass ends, so each receive reaches past
        them (a FIFO queue returns nothing more of a group while one of its records is received); then
        they are shown again, untouched. Bounded by ``REDRIVE_MAX_SECONDS``.
        """
        if not self.queue_url or not self.parked_url:
            return 0
        sqs = client("sqs")
        moved = 0
        held: list[str] = []
        deadline = time.monotonic() + REDRIVE_MAX_SECONDS
        try:
            while time.monotonic() < deadline:
                resp = sqs.receive_message(QueueUrl=self.parked_url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=HOLD_SECONDS, AttributeNames=["MessageGroupId"],
                                           WaitTimeSeconds=0)
                messages = resp.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    group = message.get("Attributes", {}).get("MessageGroupId", "")
                    if tenant_id is not None and group != tenant_id:
                        held.append(message["ReceiptHandle"])
                        continue
                    sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"], MessageGroupId=group,
                                     MessageDeduplicationId=f"redrive-{message['MessageId']}-{clock.now_ts()}"[:128])
                    sqs.delete_message(QueueUrl=self.parked_url, ReceiptHandle=message["ReceiptHandle"])
                    moved += 1
            else:
                logger.warning("redrive of parked reports stopped at its time limit; run it again",
                               extra={"tenant_id": tenant_id, "moved": moved})
        finally:
            for i in range(0, len(held), 10):
                sqs.change_message_visibility_batch(QueueUrl=self.parked_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                    for n, receipt in enumerate(held[i : i + 10])])
        return moved
