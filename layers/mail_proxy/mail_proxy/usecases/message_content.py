"""Everything the sender needs to turn a stored message into bytes: its payload, wherever it is stored,
its attachments, fetched and passed through the tenant's large-file policy, and its one-click unsubscribe
link."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.payload_store import PayloadStore
from mail_proxy.adapters.secrets_config import key_ring
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.mail.mime import ListUnsubscribe
from mail_proxy.mail.mime_bodies import FetchedAttachment
from mail_proxy.usecases.attachments import DEFAULT_ATTACHMENT_PATH, AttachmentFetcher, TenantSources
from mail_proxy.usecases.client_auth import client_auth_headers
from mail_proxy.usecases.large_files import LargeFilePolicy, apply_policy
from mail_proxy.usecases.unsubscribe_links import list_unsubscribe_for, wants_list_unsubscribe


@dataclass
class PreparedContent:
    payload: dict[str, Any]
    attachments: list[FetchedAttachment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    list_unsubscribe: ListUnsubscribe | None = None


class MessageContent:
    def __init__(self, payloads: PayloadStore, fetcher: AttachmentFetcher, *, public_url: str | None) -> None:
        self.payloads = payloads
        self.fetcher = fetcher
        self.public_url = public_url

    @classmethod
    def inline_only(cls) -> MessageContent:
        blobs = BlobStore(None)
        return cls(PayloadStore(blobs), AttachmentFetcher(blobs, allow_loopback=False), public_url=None)

    @property
    def blobs(self) -> BlobStore:
        return self.payloads.blobs

    def resolve(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.payloads.resolve(stored)

    def prepare(self, tenant: Tenant, message_id: str, payload: dict[str, Any], *,
                deadline: float | None = None) -> PreparedContent:
        """Raises AttachmentTemporaryError / AttachmentPermanentError when an attachment cannot be had;
        attachment fetches end by ``deadline`` (``time.monotonic()``)."""
        unsubscribe = list_unsubscribe_for(tenant, message_id, payload, public_url=self.public_url, ring=key_ring(),
                                           now=clock.now_ts()) if wants_list_unsubscribe(tenant, payload) else None
        specs = payload.get("attachments") or []
        if not specs:
            return PreparedContent(payload, list_unsubscribe=unsubscribe)
        base = (tenant.client_base_url or "").rstrip("/")
        sources = TenantSources(
            tenant_id=tenant.tenant_id,
            endpoint_url=base + (tenant.client_attachment_path or DEFAULT_ATTACHMENT_PATH) if base else None,
            auth_headers=client_auth_headers(tenant) if base else {},
            s3_buckets=tuple(tenant.s3_buckets or ()),
        )
        fetched = self.fetcher.fetch_all(sources, specs, deadline=deadline)
        rewritten = apply_policy(LargeFilePolicy.of(tenant), payload, fetched, tenant_id=tenant.tenant_id,
                                 message_id=message_id, blobs=self.blobs, ring=key_ring(), public_url=self.public_url)
        return PreparedContent(rewritten.payload, rewritten.attachments, rewritten.warnings, unsubscribe)
