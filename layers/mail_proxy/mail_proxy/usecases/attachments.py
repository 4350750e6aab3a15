"""Attachments, fetched at send time from where the message says they are, safely and within limits.

Modes (``fetch_mode``, or detected from ``storage_path``): ``base64`` (``base64:`` prefix or inline data),
``http_url`` (``http(s)://``, through the outbound guard), ``s3`` (``s3://bucket/key`` in a bucket the
tenant is allowed, or a key under ``attachments/<tenant>/`` of the deployment's bucket) and ``endpoint``
(anything else: POST ``{"storage_path": ...}`` to the tenant's attachment URL with its ``client_auth``).
Failures are classified once: temporary (timeouts, 5xx, S3 unavailable) are retried like SMTP 4xx;
permanent (404, bad base64, MD5 mismatch, too large, a host the address guard refuses) fail the message
with a clear reason. Every HTTP fetch ends by the caller's deadline, capped at ``FETCH_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.blob_store import BlobMissing, BlobStore, BlobTooLarge, BlobUnavailable
from mail_proxy.adapters.outbound_http import OutboundFailed, OutboundRefused, request
from mail_proxy.errors import DeliveryError
from mail_proxy.mail.mime_bodies import FetchedAttachment

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MAX_TOTAL_BYTES = 30 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 15.0
CACHE_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_ATTACHMENT_PATH = "/mail-proxy/attachments"
# control characters (C0, DEL, C1), bidirectional controls (an RLO shows "x<U+202E>fdp.exe" as "xexe.pdf")
# and what a file system or a path refuses
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069/\\:*?\"<>|]+")
_MD5_MARKER = re.compile(r"\{MD5:([0-9a-fA-F]{32})\}")


class AttachmentTemporaryError(DeliveryError):
    """Fetching failed in a way that may work later."""

    temporary = True


class AttachmentPermanentError(DeliveryError):
    """The attachment can never be fetched as given."""


def detect_mode(attachment: Mapping[str, Any]) -> tuple[str, str]:
    path = str(attachment.get("storage_path") or "")
    mode = attachment.get("fetch_mode")
    if mode:
        if mode == "base64":
            return mode, path.removeprefix("base64:")
        return str(mode), path
    if path.startswith("base64:"):
        return "base64", path[len("base64:") :]
    if path.startswith(("http://", "https://")):
        return "http_url", path
    if path.startswith("s3://"):
        return "s3", path
    return "endpoint", path


def sanitize_filename(name: str) -> str:
    """A file name safe in a MIME header and on the recipient's disk: no path, no control characters."""
    name = _MD5_MARKER.sub("", name)
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" .")
    name = re.sub(r"_+", "_", name).replace("_.", ".")
    return (name or "attachment")[:180]


def mime_type_for(filename: str, given: str | None) -> str:
    if given and re.fullmatch(r"[\w.+-]+/[\w.+-]+", given):
        return given
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


class ContentCache:
    """Fetched bytes by MD5, per warm container, bounded in total size (least recently used evicted)."""

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, md5: str | None) -> bytes | None:
        if not md5 or md5.lower() not in self._items:
            return None
        self._items.move_to_end(md5.lower())
        return self._items[md5.lower()]

    def put(self, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return
        key = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if key in self._items:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)


@dataclass
class TenantSources:
    """What a tenant's attachments may be fetched from."""

    tenant_id: str
    endpoint_url: str | None
    auth_headers: dict[str, str]
    s3_buckets: Sequence[str] = ()


class AttachmentFetcher:
    def __init__(self, blobs: BlobStore, *, allow_loopback: bool, cache: ContentCache | None = None) -> None:
        self.blobs = blobs
        self.allow_loopback = allow_loopback
        self.cache = cache or ContentCache()

    def fetch_all(self, sources: TenantSources, attachments: Sequence[Mapping[str, Any]], *,
                  deadline: float | None = None) -> list[FetchedAttachment]:
        """Every attachment of a message, fetched by ``deadline`` (``time.monotonic()``) in all."""
        fetched: list[FetchedAttachment] = []
        total = 0
        for attachment in attachments:
            item = self.fetch(sources, attachment, deadline=deadline)
            total += len(item.content)
            if total > MAX_TOTAL_BYTES:
                raise AttachmentPermanentError(
                    f"attachments exceed {MAX_TOTAL_BYTES // (1024 * 1024)} MB in total")
            fetched.append(item)
        return fetched

    def fetch(self, sources: TenantSources, attachment: Mapping[str, Any], *,
              deadline: float | None = None) -> FetchedAttachment:
        filename = sanitize_filename(str(attachment.get("filename") or "attachment"))
        marker = _MD5_MARKER.search(str(attachment.get("filename") or ""))
        expected_md5 = (attachment.get("content_md5") or (marker.group(1) if marker else None) or "").lower() or None
        data = self.cache.get(expected_md5)
        if data is None:
            mode, location = detect_mode(attachment)
            try:
                data = self._fetch(mode, location, sources, deadline)
            except (AttachmentPermanentError, AttachmentTemporaryError) as exc:
                raise type(exc)(f"{filename}: {exc}") from exc
            if len(data) > MAX_ATTACHMENT_BYTES:
                raise AttachmentPermanentError(
                    f"{filename}: larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB")
            if expected_md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected_md5:
                raise AttachmentPermanentError(f"{filename}: content does not match content_md5")
            self.cache.put(data)
        return FetchedAttachment(filename, mime_type_for(filename, attachment.get("mime_type")), data,
                                 attachment.get("content_id"), attachment.get("disposition"))

    def _fetch(self, mode: str, location: str, sources: TenantSources, deadline: float | None) -> bytes:
        if mode == "base64":
            return _decode_base64(location)
        if mode == "http_url":
            return self._http("GET", location, None, {}, deadline)
        if mode == "s3":
            return self._s3(location, sources)
        if mode == "endpoint":
            if not sources.endpoint_url:
                raise AttachmentPermanentError("no attachment endpoint: the tenant has no client_base_url")
            body = json.dumps({"storage_path": location}).encode()
            return self._http("POST", sources.endpoint_url, body,
                              {**sources.auth_headers, "Content-Type": "application/json"}, deadline)
        raise AttachmentPermanentError(f"unknown fetch_mode {mode!r}")

    def _http(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
              deadline: float | None) -> bytes:
        try:
            answer = request(method, url, body, headers, allow_loopback=self.allow_loopback,
                             timeout=FETCH_TIMEOUT_SECONDS, max_response_bytes=MAX_ATTACHMENT_BYTES,
                             deadline=deadline)
        except OutboundRefused as exc:
            raise AttachmentPermanentError(f"URL refused: {exc}") from exc
        except OutboundFailed as exc:
            raise AttachmentTemporaryError(f"fetch failed: {exc}") from exc
        if answer.truncated:
            raise AttachmentPermanentError(f"larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB")
        if answer.status >= 500 or answer.status in (408, 429):
            raise AttachmentTemporaryError(f"fetch answered {answer.status}")
        if answer.status >= 300:
            raise AttachmentPermanentError(f"fetch answered {answer.status}")
        return answer.body

    def _s3(self, location: str, sources: TenantSources) -> bytes:
        if location.startswith("s3://"):
            bucket, _, key = location[len("s3://") :].partition("/")
        else:
            bucket, key = self.blobs.bucket or "", location.lstrip("/")
        own_prefix = f"attachments/{sources.tenant_id}/"
        # the deployment's bucket: only the tenant's own prefix, even if s3_buckets names it
        allowed = key.startswith(own_prefix) if bucket == self.blobs.bucket else bucket in sources.s3_buckets
        if not bucket or not key or not allowed:
            raise AttachmentPermanentError(
                f"s3 location not allowed: use a key under {own_prefix} of the deployment bucket "
                "or a bucket the administrator allowed for the tenant")
        try:
            return self.blobs.get(key, bucket=bucket, max_bytes=MAX_ATTACHMENT_BYTES)
        except BlobMissing as exc:
            raise AttachmentPermanentError(str(exc)) from exc
        except BlobTooLarge as exc:
            raise AttachmentPermanentError(str(exc)) from exc
        except BlobUnavailable as exc:
            raise AttachmentTemporaryError(str(exc)) from exc


def _decode_base64(text: str) -> bytes:
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentPermanentError("invalid base64 content") from exc
