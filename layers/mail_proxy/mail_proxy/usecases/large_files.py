"""What a tenant wants done with attachments above its size threshold: warn, reject, or rewrite as links."""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mail_proxy.adapters.blob_store import PRESIGNED_URL_MAX_SECONDS, BlobStore
from mail_proxy.adapters.payload_store import files_prefix, message_folder
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.mail.mime_bodies import FetchedAttachment
from mail_proxy.security.crypto import KeyRing
from mail_proxy.security.file_links import FileLink, make_token
from mail_proxy.usecases.attachments import AttachmentPermanentError


@dataclass(frozen=True)
class LargeFilePolicy:
    enabled: bool = False
    max_size_mb: float = 10.0
    action: str = "warn"
    file_ttl_days: int = 30

    @classmethod
    def of(cls, tenant: Tenant) -> LargeFilePolicy:
        config = tenant.large_file_config or {}
        return cls(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})


@dataclass
class Rewritten:
    payload: dict[str, Any]
    attachments: list[FetchedAttachment]
    warnings: list[str]


def apply_policy(policy: LargeFilePolicy, payload: Mapping[str, Any], fetched: Sequence[FetchedAttachment], *,
                 tenant_id: str, message_id: str, blobs: BlobStore, ring: KeyRing, public_url: str | None
                 ) -> Rewritten:
    result = Rewritten(dict(payload), [], [])
    limit = int(policy.max_size_mb * 1024 * 1024)
    links: list[tuple[str, int, str]] = []
    for item in fetched:
        size = len(item.content)
        if not policy.enabled or size <= limit:
            result.attachments.append(item)
            continue
        described = f"attachment '{item.filename}' ({size / 1048576:.1f} MB) exceeds {policy.max_size_mb:g} MB"
        if policy.action == "reject":
            raise AttachmentPermanentError(described)
        if policy.action == "rewrite" and blobs.configured:
            # under the message's folder, so deleting the message (or the tenant) deletes the file too
            key = f"{files_prefix(tenant_id)}{message_folder(message_id)}/{uuid.uuid4().hex}/{item.filename}"
            blobs.put(key, item.content, item.mime_type or "application/octet-stream")
            expires = clock.now_ts() + policy.file_ttl_days * 86400
            links.append((item.filename, size, _link(blobs, ring, public_url, key, item.filename, expires)))
            continue
        result.warnings.append(described)
        result.attachments.append(item)
    if links:
        _append_footer(result.payload, links, clock.now_ts() + policy.file_ttl_days * 86400)
    return result


def _link(blobs: BlobStore, ring: KeyRing, public_url: str | None, key: str, filename: str, expires: int) -> str:
    if public_url:
        return f"{public_url.rstrip('/')}/files/{make_token(ring, FileLink(key, filename, expires))}"
    # no API URL known: a presigned URL, which S3 caps at 7 days
    return blobs.presigned_get(key, min(expires - clock.now_ts(), PRESIGNED_URL_MAX_SECONDS), filename)


def _append_footer(payload: dict[str, Any], links: Sequence[tuple[str, int, str]], expires: int) -> None:
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d")
    plain = "\n".join(f"  - {name} ({size / 1048576:.1f} MB): {url}" for name, size, url in links)
    footer = f"\n\n---\nLarge attachments available for download until {until}:\n{plain}\n"
    items = "".join(f'<li><a href="{html.escape(url)}">{html.escape(name)}</a> ({size / 1048576:.1f} MB)</li>'
                    for name, size, url in links)
    html_footer = (f'<hr><p><strong>Large attachments available for download until {until}:</strong></p>'
                   f"<ul>{items}</ul>")
    if payload.get("content_type") == "html":
        payload["body"] = str(payload.get("body") or "") + html_footer
    else:
        payload["body"] = str(payload.get("body") or "") + footer
    if payload.get("html_body"):
        payload["html_body"] = str(payload["html_body"]) + html_footer
