"""Attachments fetched at send time (base64, http_url, s3, endpoint) and large messages through S3."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.api import submit
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.file_server import FileServer
from tests.fixtures.smtp_server import ScriptedSmtpServer

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer({"/docs/report.pdf": PDF}) as server:
        yield server


@pytest.fixture
def delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("PUBLIC_API_URL", "http://api.test")
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


@pytest.fixture
def tenant(api: ApiClient, smtp: ScriptedSmtpServer, files: FileServer) -> str:
    token = api.create_tenant("acme", client_base_url=files.url,
                              client_auth={"method": "bearer", "token": "attachment-bearer"})
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


def bucket(stack: Stack) -> str:
    return stack.resources.buckets["AttachmentBucket"]


def send(api: ApiClient, token: str, delivery: DeliveryHarness, *messages: dict[str, Any]) -> None:
    submit(api, token, *messages, queued=True)
    delivery.drain()


def attachments_of(raw: bytes) -> dict[str, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}  # type: ignore[attr-defined]


def status(api: ApiClient, token: str, mid: str) -> dict[str, Any]:
    return dict(api.get(f"/messages/{mid}", token=token).json)


def test_base64_attachment_arrives_byte_for_byte(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                 smtp: ScriptedSmtpServer) -> None:
    data = base64.b64encode(PDF).decode()
    send(api, tenant, delivery, message("m1", attachments=[
        {"filename": "report.pdf", "storage_path": data, "fetch_mode": "base64"},
        {"filename": "auto.bin", "storage_path": "base64:" + base64.b64encode(b"\x00\x01").decode()}]))
    got = attachments_of(smtp.wait_for_messages(1)[0].data)
    assert got == {"report.pdf": PDF, "auto.bin": b"\x00\x01"}


def test_http_url_attachment_is_fetched_and_detected(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                     smtp: ScriptedSmtpServer, files: FileServer) -> None:
    send(api, tenant, delivery, message("m1", attachments=[
        {"filename": "r.pdf", "storage_path": files.url + "/docs/report.pdf",
         "content_md5": hashlib.md5(PDF, usedforsecurity=False).hexdigest()}]))
    assert attachments_of(smtp.wait_for_messages(1)[0].data) == {"r.pdf": PDF}


def test_endpoint_attachment_posts_the_storage_path_with_the_tenant_auth(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, files: FileServer) -> None:
    send(api, tenant, delivery, message("m1", attachments=[{"filename": "e.pdf", "storage_path": "/docs/report.pdf"}]))
    assert attachments_of(smtp.wait_for_messages(1)[0].data) == {"e.pdf": PDF}
    method, path, headers, body = files.requests[-1]
    assert method == "POST" and path == "/mail-proxy/attachments"
    assert json.loads(body) == {"storage_path": "/docs/report.pdf"}
    assert headers["authorization"] == "Bearer attachment-bearer"


def test_s3_attachment_of_five_megabytes_arrives_intact(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                         smtp: ScriptedSmtpServer, stack: Stack) -> None:
    big = os.urandom(5 * 1024 * 1024)
    boto3.client("s3").put_object(Bucket=bucket(stack), Key="attachments/acme/big.bin", Body=big)
    send(api, tenant, delivery, message("m1", attachments=[
        {"filename": "big.bin", "storage_path": "attachments/acme/big.bin", "fetch_mode": "s3"},
        {"filename": "big2.bin", "storage_path": f"s3://{bucket(stack)}/attachments/acme/big.bin"}]))
    got = attachments_of(smtp.wait_for_messages(1)[0].data)
    assert got["big.bin"] == big and got["big2.bin"] == big


def test_s3_key_of_another_tenant_is_refused(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                             smtp: ScriptedSmtpServer, stack: Stack) -> None:
    boto3.client("s3").put_object(Bucket=bucket(stack), Key="attachments/rival/secret.pdf", Body=b"x")
    send(api, tenant, delivery, message("m1", attachments=[
        {"filename": "s.pdf", "storage_path": "attachments/rival/secret.pdf", "fetch_mode": "s3"}]))
    record = status(api, tenant, "m1")
    assert record["status"] == "error" and "not allowed" in record["error"]
    assert smtp.messages == []


@pytest.mark.parametrize(("spec", "expected"), [
    ({"filename": "x.pdf", "storage_path": "/nothing/here", "fetch_mode": "http_url"}, "refused"),
    ({"filename": "x.pdf", "storage_path": "!!!not base64!!!", "fetch_mode": "base64"}, "invalid base64"),
    ({"filename": "x.pdf", "storage_path": "base64:AAAA", "content_md5": "0" * 32}, "content_md5"),
])
def test_permanent_fetch_failures_fail_the_message_with_a_clear_reason(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        spec: dict[str, Any], expected: str) -> None:
    send(api, tenant, delivery, message("m1", attachments=[spec]))
    record = status(api, tenant, "m1")
    assert record["status"] == "error" and expected in record["error"] and "x.pdf" in record["error"]


def test_404_fails_and_503_is_retried(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                      smtp: ScriptedSmtpServer, files: FileServer) -> None:
    send(api, tenant, delivery, message("gone", attachments=[
        {"filename": "g.pdf", "storage_path": files.url + "/missing.pdf"}]))
    assert status(api, tenant, "gone")["status"] == "error" and "404" in status(api, tenant, "gone")["error"]
    files.failures.append(503)
    send(api, tenant, delivery, message("busy", attachments=[
        {"filename": "b.pdf", "storage_path": files.url + "/docs/report.pdf"}]))
    record = status(api, tenant, "busy")
    assert record["status"] == "deferred" and "503" in record["history"][-1]["description"]


def test_a_300_kb_body_goes_through_s3_transparently(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                     smtp: ScriptedSmtpServer, stack: Stack) -> None:
    body = ("lorem ipsum dolor sit amet " * 12000)[:299_999] + "."
    send(api, tenant, delivery, message("long", body=body))
    raw = json.dumps(stack.raw_items())
    assert "lorem ipsum dolor sit amet lorem" not in raw  # the table holds a pointer, not the body
    received = email.message_from_bytes(smtp.wait_for_messages(1)[0].data, policy=email.policy.default)
    assert received.get_content().rstrip() == body  # type: ignore[attr-defined]
    assert status(api, tenant, "long")["message"]["body"] == body


def test_rewrite_replaces_a_large_file_by_a_working_link(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                         smtp: ScriptedSmtpServer) -> None:
    assert api.put("/tenant/acme", token=tenant, body={"large_file_config": {
        "enabled": True, "max_size_mb": 1, "action": "rewrite", "file_ttl_days": 3}}).status == 200
    big = os.urandom(2 * 1024 * 1024)
    send(api, tenant, delivery, message("m1", body="See attached.", attachments=[
        {"filename": "big.bin", "storage_path": base64.b64encode(big).decode(), "fetch_mode": "base64"},
        {"filename": "small.txt", "storage_path": "base64:" + base64.b64encode(b"hi").decode()}]))
    received = email.message_from_bytes(smtp.wait_for_messages(1)[0].data, policy=email.policy.default)
    assert attachments_of(received.as_bytes()) == {"small.txt": b"hi"}
    text = next(p for p in received.walk() if p.get_content_type() == "text/plain").get_content()
    link = next(word for word in text.split() if word.startswith("http://api.test/files/"))
    redirect = api.get(link.removeprefix("http://api.test"))
    assert redirect.status == 302
    assert requests.get(redirect.headers["location"], timeout=10).content == big
    assert api.get("/files/forged.token").status == 404


def test_reject_fails_a_message_with_a_too_large_attachment(api: ApiClient, tenant: str,
                                                             delivery: DeliveryHarness) -> None:
    api.put("/tenant/acme", token=tenant, body={"large_file_config": {"enabled": True, "max_size_mb": 0.001,
                                                                     "action": "reject"}})
    send(api, tenant, delivery, message("m1", attachments=[{"filename": "r.pdf", "storage_path": "base64:"
                                                            + base64.b64encode(PDF).decode()}]))
    record = status(api, tenant, "m1")
    assert record["status"] == "error" and "exceeds" in record["error"]


def test_warn_sends_the_file_and_records_a_warning(api: ApiClient, tenant: str, delivery: DeliveryHarness,
                                                   smtp: ScriptedSmtpServer) -> None:
    api.put("/tenant/acme", token=tenant, body={"large_file_config": {"enabled": True, "max_size_mb": 0.001}})
    send(api, tenant, delivery, message("m1", attachments=[{"filename": "r.pdf", "storage_path": "base64:"
                                                            + base64.b64encode(PDF).decode()}]))
    assert attachments_of(smtp.wait_for_messages(1)[0].data) == {"r.pdf": PDF}
    assert "exceeds" in status(api, tenant, "m1")["history"][-1]["metadata"]["warnings"][0]


def test_only_the_admin_may_allow_other_buckets(api: ApiClient, tenant: str) -> None:
    assert api.put("/tenant/acme", token=tenant, body={"s3_buckets": ["their-bucket"]}).status == 403
    assert api.put("/tenant/acme", token=ADMIN_TOKEN, body={"s3_buckets": ["their-bucket"]}).status == 200


def test_the_smtp_servers_advertised_size_is_respected(api: ApiClient, delivery: DeliveryHarness) -> None:
    with ScriptedSmtpServer(data_size_limit=20_000) as small:
        token = api.create_tenant("tiny")
        api.create_account(token, host="127.0.0.1", port=small.port, tls="none", user=None, password=None)
        send(api, token, delivery, message("big", attachments=[
            {"filename": "r.bin", "storage_path": "base64:" + base64.b64encode(os.urandom(40_000)).decode()}]))
        record = status(api, token, "big")
        assert record["status"] == "error" and "too large" in record["error"]
        assert small.messages == []
