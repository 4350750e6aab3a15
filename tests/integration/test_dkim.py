"""DKIM: a tenant registers a signing domain, publishes the TXT record it is given, and its mail arrives at a
real SMTP sink signed so that an independent verifier (dkimpy, DNS answered by a stub from the published
records) accepts it. Rotation adds a selector; the private key never leaves encrypted storage."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import boto3
import dkim
import pytest

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.dynamodb.keys import TENANT_SK, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.adapters.secrets_config import key_ring
from mail_proxy.mail.dkim_signing import SIGNED_HEADERS
from mail_proxy.security.crypto import key_id
from mail_proxy.usecases import key_rotation
from mail_proxy.usecases.dkim_keys import dkim_key_context
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message
from tests.fixtures.delivery import DeliveryHarness, record, submit
from tests.fixtures.smtp_server import ScriptedSmtpServer
from tests.integration.test_key_rotation import KEY_A, KEY_B, use_keys

KEY_A_ID = key_id(KEY_A)


class PublishedDns:
    """The TXT records a tenant published: what dkimpy's lookups are answered from."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.asked: list[str] = []

    def publish(self, domain_view: dict[str, Any]) -> None:
        for selector in domain_view["selectors"]:
            assert selector["dns_type"] == "TXT"
            self.records[selector["dns_name"]] = selector["dns_value"]

    def lookup(self, name: bytes, timeout: int = 5) -> bytes | None:
        text = name.decode().rstrip(".")
        self.asked.append(text)
        value = self.records.get(text)
        return value.encode() if value is not None else None


@pytest.fixture
def dns() -> PublishedDns:
    return PublishedDns()


def register(api: ApiClient, token: str, domain: str = "example.com", **fields: Any) -> dict[str, Any]:
    resp = api.post("/tenant/acme/dkim", token=token, body={"domain": domain, **fields})
    assert resp.status == 201, resp.text
    return dict(resp.json)


def signature_tags(raw: bytes) -> dict[str, str]:
    header = email.message_from_bytes(raw, policy=email.policy.compat32)["DKIM-Signature"]
    assert header is not None, "message is not signed"
    flat = re.sub(r"\s+", "", str(header))
    return dict(part.split("=", 1) for part in flat.split(";") if part)


def deliver_one(api: ApiClient, token: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, mid: str,
                **fields: Any) -> bytes:
    submit(api, token, message(mid, **fields))
    delivery.drain()
    assert record(api, token, mid)["status"] == "sent"
    return smtp.wait_for_messages(len(smtp.messages) or 1)[-1].data


def test_registering_a_domain_returns_the_txt_record_to_publish(api: ApiClient, tenant: str) -> None:
    view = register(api, tenant, "Example.COM", selector="news2026")
    assert view["domain"] == "example.com" and view["signing_selector"] == "news2026"
    [selector] = view["selectors"]
    assert selector["dns_name"] == "news2026._domainkey.example.com"
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*", selector["dns_value"])
    assert len(selector["dns_value"]) > 350  # a 2048-bit key
    again = api.post("/tenant/acme/dkim", token=tenant, body={"domain": "example.com"})
    assert again.status == 409
    listed = api.get("/tenant/acme/dkim", token=tenant)
    assert listed.status == 200 and [d["domain"] for d in listed.json["domains"]] == ["example.com"]


def test_mail_from_a_registered_domain_is_signed_and_verifies_against_the_published_key(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, dns: PublishedDns) -> None:
    dns.publish(register(api, tenant, selector="s1"))
    raw = deliver_one(api, tenant, delivery, smtp, "m1", **{"from": "News <news@example.com>"},
                      cc=["c@example.org"], reply_to="help@example.com", subject="Spring  sale",
                      body="Hello   there \n\n\n", headers={"List-Unsubscribe": "<mailto:u@example.com>"})
    assert dkim.verify(raw, dnsfunc=dns.lookup)
    assert dns.asked == ["s1._domainkey.example.com"]
    tags = signature_tags(raw)
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == ("example.com", "s1", "rsa-sha256", "relaxed/relaxed")
    signed = tags["h"].split(":")
    assert {"from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
            "reply-to", "list-unsubscribe"} <= set(signed) <= set(SIGNED_HEADERS)
    tampered = raw.replace(b"Spring  sale", b"Spring  SALE")
    assert not dkim.verify(tampered, dnsfunc=dns.lookup)


def test_a_subdomain_is_signed_by_its_registered_parent_domain(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, dns: PublishedDns) -> None:
    dns.publish(register(api, tenant, "example.com"))
    raw = deliver_one(api, tenant, delivery, smtp, "m1", **{"from": "news@mail.example.com"})
    assert signature_tags(raw)["d"] == "example.com"
    assert dkim.verify(raw, dnsfunc=dns.lookup)


def test_mail_from_a_domain_the_tenant_does_not_sign_goes_out_unsigned(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    register(api, tenant, "example.net")
    raw = deliver_one(api, tenant, delivery, smtp, "m1", **{"from": "sender@example.com"})
    assert b"DKIM-Signature" not in raw


def test_rotation_signs_with_the_new_selector_and_lists_the_old_one_until_it_is_removed(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, dns: PublishedDns) -> None:
    dns.publish(register(api, tenant, selector="old"))
    before = deliver_one(api, tenant, delivery, smtp, "m1")
    rotated = api.post("/tenant/acme/dkim/example.com/rotate", token=tenant, body={"selector": "new"})
    assert rotated.status == 200, rotated.text
    assert rotated.json["signing_selector"] == "new"
    assert {s["selector"]: s["signing"] for s in rotated.json["selectors"]} == {"old": False, "new": True}
    dns.publish(rotated.json)
    after = deliver_one(api, tenant, delivery, smtp, "m2")
    assert signature_tags(after)["s"] == "new" and dkim.verify(after, dnsfunc=dns.lookup)
    assert dkim.verify(before, dnsfunc=dns.lookup)  # mail signed before the rotation still verifies

    refused = api.delete("/tenant/acme/dkim/example.com/selectors/new", token=tenant)
    assert refused.status == 409
    removed = api.delete("/tenant/acme/dkim/example.com/selectors/old", token=tenant)
    assert removed.status == 200, removed.text
    assert [s["selector"] for s in removed.json["selectors"]] == ["new"]


def test_a_key_rotated_without_activation_signs_only_once_activated(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, dns: PublishedDns) -> None:
    dns.publish(register(api, tenant, selector="old"))
    staged = api.post("/tenant/acme/dkim/example.com/rotate", token=tenant,
                      body={"selector": "next", "activate": False})
    assert staged.status == 200 and staged.json["signing_selector"] == "old"
    assert signature_tags(deliver_one(api, tenant, delivery, smtp, "m1"))["s"] == "old"
    dns.publish(staged.json)
    activated = api.post("/tenant/acme/dkim/example.com/selectors/next/activate", token=tenant)
    assert activated.status == 200 and activated.json["signing_selector"] == "next"
    raw = deliver_one(api, tenant, delivery, smtp, "m2")
    assert signature_tags(raw)["s"] == "next" and dkim.verify(raw, dnsfunc=dns.lookup)


def test_removing_the_domain_stops_signing(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    register(api, tenant)
    assert api.delete("/tenant/acme/dkim/example.com", token=tenant).status == 200
    assert api.get("/tenant/acme/dkim/example.com", token=tenant).status == 404
    assert b"DKIM-Signature" not in deliver_one(api, tenant, delivery, smtp, "m1")


def test_another_tenants_token_cannot_see_or_change_the_domains(api: ApiClient, tenant: str) -> None:
    register(api, tenant)
    other = api.create_tenant("beta")
    for method, path in (("GET", "/tenant/acme/dkim"), ("POST", "/tenant/acme/dkim"),
                         ("POST", "/tenant/acme/dkim/example.com/rotate"),
                         ("DELETE", "/tenant/acme/dkim/example.com")):
        body = {"domain": "evil.example"} if method == "POST" and path.endswith("/dkim") else None
        assert api.request(method, path, token=other, body=body).status == 403, (method, path)
    assert api.get("/tenant/acme/dkim", token=ADMIN_TOKEN).status == 200
    assert api.get("/tenant/acme/dkim").status == 401


@pytest.mark.parametrize("domain", ["localhost", "exa mple.com", "-bad.example.com", "a..b.com", "x" * 70 + ".com"])
def test_an_invalid_domain_is_refused_with_422(api: ApiClient, tenant: str, domain: str) -> None:
    resp = api.post("/tenant/acme/dkim", token=tenant, body={"domain": domain})
    assert resp.status == 422, resp.text


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + json.dumps(record.__dict__, default=str))


@pytest.fixture
def logs() -> Iterator[Collect]:
    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_private_key_is_in_no_answer_no_log_and_only_encrypted_in_the_table(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, stack: Stack,
        logs: Collect) -> None:
    answers = [register(api, tenant, selector="s1")]
    for method, path, body in (("POST", "/tenant/acme/dkim/example.com/rotate", {"selector": "s2"}),
                               ("GET", "/tenant/acme/dkim", None), ("GET", "/tenant/acme/dkim/example.com", None),
                               ("GET", "/tenant/acme", None), ("GET", "/command-log?tenant_id=acme", None)):
        resp = api.request(method, path, token=ADMIN_TOKEN if "command-log" in path else tenant, body=body)
        assert resp.status == 200, resp.text
        answers.append(resp.json)
    deliver_one(api, tenant, delivery, smtp, "m1")

    tenant_item = MailRepository(stack.table_name).get_tenant("acme")
    assert tenant_item is not None
    pems = [key_ring().decrypt(e["private_key"], context=dkim_key_context("acme", e["domain"], e["selector"]))
            for e in tenant_item.dkim_keys]
    assert len(pems) == 2 and all(e["private_key"].startswith("ENC:") for e in tenant_item.dkim_keys)
    # any 40-character run of a key's base64 would betray it; so would the PEM armour
    fragments = {line[i:i + 40] for pem in pems for line in pem.splitlines()[1:-1] for i in (0, 20) if len(line) >= 60}
    seen = json.dumps(answers) + "\n".join(logs.lines) + json.dumps(stack.raw_items())
    assert "PRIVATE KEY" not in seen
    assert not [f for f in fragments if f in seen]


def test_reencrypt_covers_dkim_keys_and_signing_goes_on_under_the_new_encryption_key(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, dns: PublishedDns,
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.publish(register(api, tenant))
    repo = MailRepository(stack.table_name)
    usage = key_rotation.key_usage(repo)
    assert usage.by_key[KEY_A_ID]["DKIM private keys"] == 1

    use_keys(monkeypatch, KEY_B, previous=KEY_A)
    report = key_rotation.reencrypt_all(repo, key_ring())
    assert report.failed == [] and report.values >= 1
    use_keys(monkeypatch, KEY_B)  # the old key is gone: only what was re-encrypted still decrypts
    assert KEY_A_ID not in key_rotation.key_usage(repo).by_key
    delivery.sender_module.dispatcher.cache_clear()
    raw = deliver_one(api, tenant, delivery, smtp, "m1")
    assert dkim.verify(raw, dnsfunc=dns.lookup)



def test_a_key_that_does_not_decrypt_holds_the_message_back_instead_of_sending_it_unsigned(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, stack: Stack) -> None:
    register(api, tenant, selector="s1")
    foreign = key_ring().encrypt("not this key", context=dkim_key_context("beta", "example.com", "s1"))
    boto3.client("dynamodb").update_item(
        TableName=stack.table_name, Key=item_key(tenant_pk("acme"), TENANT_SK),
        UpdateExpression="SET dkim_keys[0].private_key = :v", ExpressionAttributeValues={":v": {"S": foreign}})
    submit(api, tenant, message("m1"))
    delivery.drain()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "deferred" and "DecryptionError" in rec["history"][-1]["description"]
    assert smtp.messages == []
