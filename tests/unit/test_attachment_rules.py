from __future__ import annotations

import pytest

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.usecases.attachments import (
    AttachmentFetcher,
    AttachmentPermanentError,
    ContentCache,
    TenantSources,
    detect_mode,
    mime_type_for,
    sanitize_filename,
)


@pytest.mark.parametrize(("path", "mode"), [
    ("base64:QUJD", "base64"), ("https://files.example.com/a.pdf", "http_url"), ("http://x/y", "http_url"),
    ("s3://bucket/key", "s3"), ("invoices/2026/11.pdf", "endpoint"), ("doc:42", "endpoint"),
])
def test_fetch_mode_is_detected_from_the_storage_path(path: str, mode: str) -> None:
    assert detect_mode({"storage_path": path})[0] == mode


def test_an_explicit_fetch_mode_wins() -> None:
    assert detect_mode({"storage_path": "https://x/y", "fetch_mode": "endpoint"}) == ("endpoint", "https://x/y")


@pytest.mark.parametrize(("given", "safe"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\report.pdf", "report.pdf"), ("a\r\nb.txt", "a_b.txt"),
    ("report_{MD5:0123456789abcdef0123456789abcdef}.pdf", "report.pdf"), ("", "attachment"), ("...", "attachment"),
])
def test_filenames_are_sanitised(given: str, safe: str) -> None:
    assert sanitize_filename(given) == safe


def test_mime_type_comes_from_the_field_or_the_extension() -> None:
    assert mime_type_for("a.pdf", None) == "application/pdf"
    assert mime_type_for("a.unknownext", None) == "application/octet-stream"
    assert mime_type_for("a.pdf", "text/plain") == "text/plain"
    assert mime_type_for("a.pdf", "not a type") == "application/pdf"


@pytest.mark.parametrize("url", ["https://10.0.0.1/a.pdf", "https://169.254.169.254/latest", "http://127.0.0.1/x"])
def test_attachment_urls_to_private_addresses_are_refused(url: str) -> None:
    fetcher = AttachmentFetcher(BlobStore(None), allow_loopback=False)
    with pytest.raises(AttachmentPermanentError, match="refused"):
        fetcher.fetch(TenantSources("acme", None, {}), {"filename": "a.pdf", "storage_path": url})


def test_the_cache_is_keyed_by_md5_and_bounded() -> None:
    cache = ContentCache(max_bytes=40)
    cache.put(b"a" * 10)
    assert cache.get("e09c80c42fda55f9d992e59ca6b3307d") == b"a" * 10
    for i in range(10):
        cache.put(bytes([i]) * 10)
    assert cache.get("e09c80c42fda55f9d992e59ca6b3307d") is None
