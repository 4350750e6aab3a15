"""Tenants and accounts as the repository returns them: typed, and turned back into exactly the stored item."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.adapters.dynamodb.accounts import account_from_item, account_item
from mail_proxy.adapters.dynamodb.table import marshal, unmarshal
from mail_proxy.adapters.dynamodb.tenants import tenant_from_item, tenant_item
from mail_proxy.domain.entities import Account, Tenant

CREATED = {  # what TenantAdmin.create writes (every optional field given)
    "tenant_id": "acme", "name": "Acme", "active": True, "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:00+00:00", "signing_secret": "enc:v1:k1:abc", "token_hash": "f" * 64,
    "client_base_url": "https://app.acme.example", "client_sync_path": "/mail-proxy/sync",
    "client_attachment_path": "/files", "client_auth": {"method": "basic", "user": "u", "password": "enc:v1:k1:p"},
    "rate_limits": {"per_minute": 10}, "large_file_config": {"enabled": True, "max_size_mb": 2.5, "action": "link"},
    "s3_buckets": ["acme-files"], "bounce_imap": {"host": "imap.acme.example", "port": 993, "user": "b",
                                                  "password": "enc:v1:k1:q", "folder": "INBOX", "tls": "ssl"},
    "return_path": "bounces@acme.example", "unsubscribe": {"default": True, "mailto": "leave@acme.example"},
    "reputation_thresholds": {"min_sends": 50, "bounce_pause": 0.1},
}
LATER = {  # what later writes add to the tenant item
    "suspended_batches": ["news", "promo"], "admin_suspended": True, "admin_suspended_reason": "abuse",
    "admin_suspended_at": "2026-01-02T00:00:00+00:00", "reputation_paused": True,
    "reputation_paused_reason": "bounces", "reputation_paused_at": "2026-01-03T00:00:00+00:00",
    "reputation_warning": "bounces", "reputation_warning_at": "2026-01-03T00:00:00+00:00",
    "reputation_baseline": {"bucket": 1_700_000_000, "counts": {"sent": 4}}, "has_suppressions": True,
    "dkim_keys": [{"domain": "acme.example", "selector": "s1", "signing": True, "private_key": "enc:v1:k1:d",
                   "public_key": "MII", "created_at": "2026-01-04T00:00:00+00:00"}],
    "previous_signing_secret": "enc:v1:k1:old", "previous_signing_valid_until": 1_700_003_600,
    "previous_signing_secrets": [{"secret": "enc:v1:k1:old", "valid_until": 1_700_003_600}],
    "last_sync_ts": 1_700_000_000, "report_quiet_until": 1_700_000_600, "report_attempts": 2,
    "report_attempt_record": "r1", "report_hidden_receipt": "receipt", "sync_pending": "sync-1",
    "sync_pending_ts": 1_700_000_000, "some_attribute_a_later_version_adds": {"x": [1, 2]},
}
KEYS = {"pk": "TENANT#acme", "sk": "#TENANT", "gsi1pk": "TENANTS", "gsi1sk": "acme"}
SMTP = {"id": "smtp1", "tenant_id": "acme", "host": "smtp.acme.example", "port": 587, "user": "u",
        "password": "enc:v1:k1:p", "tls": "starttls", "limit_per_minute": 10, "limit_behavior": "defer",
        "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"}
PEC = {**SMTP, "id": "pec1", "tls": "ssl", "limit_behavior": "reject", "is_pec": True, "imap_host": "imap.pec.it",
       "imap_port": 993, "imap_user": "p", "imap_password": "enc:v1:k1:i", "imap_folder": "INBOX", "imap_tls": "ssl"}


@pytest.mark.parametrize("stored", [{"tenant_id": "bare"}, CREATED, {**CREATED, **LATER}],
                         ids=["minimal", "as created", "with every later write"])
def test_a_tenant_item_becomes_a_tenant_and_back_unchanged(stored: dict[str, Any]) -> None:
    tenant = tenant_from_item({**stored, **KEYS})
    assert tenant_item(tenant) == stored
    assert "pk" not in tenant.stored()  # the keys are the repository's, never the tenant's


def test_the_created_tenant_is_stored_byte_for_byte_as_before() -> None:
    assert marshal(tenant_item(tenant_from_item(CREATED))) == marshal(CREATED)
    assert unmarshal(marshal(CREATED)) == CREATED


def test_a_tenant_reads_as_attributes() -> None:
    tenant = tenant_from_item({**CREATED, **LATER, **KEYS})
    assert tenant.suspended_batch_codes == {"news", "promo"} and tenant.batch_is_suspended("news")
    assert not tenant.is_sending(None)  # suspended by an administrator
    assert tenant.reports_enabled and tenant.client_auth == CREATED["client_auth"]
    assert tenant.extra == {"some_attribute_a_later_version_adds": {"x": [1, 2]}}
    bare = tenant_from_item({"tenant_id": "bare"})
    assert bare.is_active and bare.is_sending("any") and not bare.reports_enabled
    assert Tenant("t", suspended_batches=["*"]).batch_is_suspended("anything")
    assert not Tenant("t", active=False).is_sending(None)


@pytest.mark.parametrize("stored", [SMTP, PEC], ids=["smtp", "pec"])
def test_an_account_item_becomes_an_account_and_back_unchanged(stored: dict[str, Any]) -> None:
    account = account_from_item({**stored, "pk": "TENANT#acme", "sk": f"ACCOUNT#{stored['id']}"})
    assert account_item(account) == stored
    assert marshal(account_item(account)) == marshal(stored)


def test_an_account_reads_as_attributes_with_the_stored_defaults() -> None:
    pec = account_from_item(PEC)
    assert pec.is_pec and pec.rejects_over_limit and pec.tls_mode == "ssl" and pec.limit_per("minute") == 10
    plain = Account("a", "acme", "smtp.example", 25)
    assert not plain.is_pec and plain.tls_mode == "starttls" and not plain.rejects_over_limit
    assert plain.limit_per("day") is None and account_item(plain) == {"id": "a", "tenant_id": "acme",
                                                                      "host": "smtp.example", "port": 25}


VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                    max_size=3),
                      max_leaves=6)
NAMES = st.sampled_from([*CREATED, *LATER, "anything", "else"])


@settings(max_examples=80, deadline=None)
@given(fields=st.dictionaries(NAMES, VALUES.filter(lambda v: v is not None), max_size=12))
def test_any_stored_attributes_survive_the_round_trip(fields: dict[str, Any]) -> None:
    stored = {**fields, "tenant_id": "acme"}
    assert tenant_item(tenant_from_item(stored)) == stored
