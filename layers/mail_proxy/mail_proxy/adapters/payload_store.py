"""Claim check for message contents: small ones stay in the table, larger ones go to S3.

DynamoDB bills writes per kilobyte and caps an item at 400 KB; S3 bills per request. So a payload over
``inline_max_bytes`` (16 KB by default) is stored as an S3 object and the table keeps a pointer. Callers
never see the difference: ``prepare`` before storing, ``resolve`` after reading.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from mail_proxy.adapters.blob_store import BlobStore

DEFAULT_INLINE_MAX_BYTES = 16 * 1024
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
POINTER = "$s3"


def message_folder(message_id: str) -> str:
    """The folder of a message's objects under its tenant (payloads and large files), so that they can
    be found and deleted with the message; hashed because ids may hold any printable character."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:24]


def payload_prefix(tenant_id: str) -> str:
    return f"payloads/{tenant_id}/"


def files_prefix(tenant_id: str) -> str:
    return f"files/{tenant_id}/"


def stored_object_key(stored: dict[str, Any] | None) -> str | None:
    """The S3 key a stored payload points to, if it went to S3."""
    return str(stored[POINTER]) if stored and POINTER in stored else None


class PayloadStore:
    def __init__(self, blobs: BlobStore, inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES) -> None:
        self.blobs = blobs
        self.inline_max_bytes = inline_max_bytes

    @property
    def max_inline_only_bytes(self) -> int:
        """The largest payload accepted when there is no bucket (must fit a DynamoDB item)."""
        return 350 * 1024

    def limit(self) -> int:
        return MAX_PAYLOAD_BYTES if self.blobs.configured else self.max_inline_only_bytes

    def prepare(self, tenant_id: str, message_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) <= self.inline_max_bytes or not self.blobs.configured:
            return payload
        key = f"{payload_prefix(tenant_id)}{message_folder(message_id)}/{uuid.uuid4().hex}.json"
        self.blobs.put(key, data, "application/json")
        return {POINTER: key, "size": len(data)}

    def resolve(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        if not stored or POINTER not in stored:
            return stored
        return dict(json.loads(self.blobs.get(stored[POINTER], max_bytes=MAX_PAYLOAD_BYTES)))
