"""S3 objects live and die with their message or tenant: payloads over 16 KB and large files turned into
download links are deleted with the message (delete, cleanup) or the tenant, and a link whose object is gone
answers 404 instead of redirecting to a dead presigned URL.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mail_proxy.domain import clock
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.api import submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import ScriptedSmtpServer

BIG_BODY = "lorem ipsum dolor sit amet " * 1000  # 27 KB: over the 16 KB kept in the table


@pytest.fixture
def delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("PUBLIC_API_URL", "http://api.test")
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str) -> str:
    token = api.create_tenant(tenant_id, large_file_config={"enabled": True, "max_size_mb": 1, "action": "rewrite",
                                                            "file_ttl_days": 3})
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def objects(stack: Stack, prefix: str = "") -> list[str]:
    resp = boto3.client("s3").list_objects_v2(Bucket=stack.resources.buckets["AttachmentBucket"], Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def with_big_file(mid: str) -> dict[str, Any]:
    big = os.urandom(1024 * 1024 + 10)
    return message(mid, body="See attached.", attachments=[
        {"filename": "big.bin", "storage_path": base64.b64encode(big).decode(), "fetch_mode": "base64"}])


def link_in(raw: bytes) -> str:
    received = email.message_from_bytes(raw, policy=email.policy.default)
    text = next(p for p in received.walk() if p.get_content_type() == "text/plain").get_content()  # type: ignore[attr-defined]
    return next(w for w in text.split() if w.startswith("http://api.test/files/")).removeprefix("http://api.test")


def test_deleting_a_message_deletes_its_s3_payload(api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, message("big1", body=BIG_BODY, deferred_ts=clock.now_ts() + 3600),
           message("big2", body=BIG_BODY, deferred_ts=clock.now_ts() + 3600), queued=True)
    assert len(objects(stack, "payloads/acme/")) == 2
    resp = api.post("/commands/delete-messages", token=token, body={"ids": ["big1"]})
    assert resp.status == 200 and resp.json["removed"] == 1
    assert len(objects(stack, "payloads/acme/")) == 1  # big2's stays
    assert api.get("/messages/big2", token=token).json["message"]["body"] == BIG_BODY


def test_deleting_a_sent_message_deletes_its_large_file_and_its_link_answers_404(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, with_big_file("f1"), with_big_file("f2"), queued=True)
    delivery.drain()
    links = {link_in(m.data) for m in smtp.wait_for_messages(2)}
    assert len(links) == 2 and len(objects(stack, "files/acme/")) == 2
    assert all(api.get(link).status == 302 for link in links)
    assert api.post("/commands/delete-messages", token=token, body={"ids": ["f1"]}).json["removed"] == 1
    assert len(objects(stack, "files/acme/")) == 1
    assert sorted(api.get(link).status for link in links) == [302, 404]


def test_cleanup_deletes_the_objects_of_the_messages_it_removes(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, with_big_file("f1"), message("big1", body=BIG_BODY), queued=True)
    delivery.drain()
    smtp.wait_for_messages(2)
    assert objects(stack, "files/acme/") and objects(stack, "payloads/acme/")
    clock.advance(10)
    resp = api.post("/commands/cleanup-messages", token=token, body={"older_than_seconds": 0})
    assert resp.status == 200 and resp.json["removed"] == 2
    assert objects(stack, "files/acme/") == [] and objects(stack, "payloads/acme/") == []


def test_deleting_a_tenant_deletes_its_objects_and_leaves_the_others(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    acme = make_tenant(api, smtp, "acme")
    acme2 = make_tenant(api, smtp, "acme2")  # a tenant id that starts with the other's
    submit(api, acme, with_big_file("f1"), message("big1", body=BIG_BODY, deferred_ts=clock.now_ts() + 3600),
           queued=True)
    submit(api, acme2, with_big_file("f1"), message("big1", body=BIG_BODY, deferred_ts=clock.now_ts() + 3600),
           queued=True)
    delivery.drain()
    links = [link_in(m.data) for m in smtp.wait_for_messages(2)]
    before_acme2 = objects(stack, "files/acme2/") + objects(stack, "payloads/acme2/")
    assert len(before_acme2) == 3  # f1's payload (its attachment is inline), f1's file, big1's payload
    assert api.delete("/tenant/acme", token=ADMIN_TOKEN).status == 200
    assert objects(stack, "files/acme/") == [] and objects(stack, "payloads/acme/") == []
    assert objects(stack, "files/acme2/") + objects(stack, "payloads/acme2/") == before_acme2
    assert sorted(api.get(link).status for link in links) == [302, 404]


def test_a_link_whose_object_is_gone_answers_404_not_a_redirect(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, "acme")
    submit(api, token, with_big_file("f1"), queued=True)
    delivery.drain()
    link = link_in(smtp.wait_for_messages(1)[0].data)
    [key] = objects(stack, "files/acme/")
    boto3.client("s3").delete_object(Bucket=stack.resources.buckets["AttachmentBucket"], Key=key)
    resp = api.get(link)
    assert resp.status == 404 and "location" not in resp.headers


def test_an_s3_failure_while_deleting_objects_does_not_fail_the_deletion(
        api: ApiClient, stack: Stack, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.adapters.blob_store import BlobStore, BlobUnavailable

    token = make_tenant(api, smtp, "acme")
    submit(api, token, message("big1", body=BIG_BODY, deferred_ts=clock.now_ts() + 3600), queued=True)

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise BlobUnavailable("S3 delete failed: SlowDown")

    monkeypatch.setattr(BlobStore, "delete", unavailable)
    monkeypatch.setattr(BlobStore, "list_keys", unavailable)
    resp = api.post("/commands/delete-messages", token=token, body={"ids": ["big1"]})
    assert resp.status == 200 and resp.json["removed"] == 1
    assert api.get("/messages/big1", token=token).status == 404
    assert api.delete("/tenant/acme", token=ADMIN_TOKEN).status == 200
