"""MailProxyClient against the real application (the session's local stack): every route, and the error answers
as the proxy really gives them."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import time

import pytest
from mail_proxy_client import (
    Conflict,
    Forbidden,
    MailProxyClient,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from mail_proxy_client.client import NOT_CLIENT_ROUTES, ROUTES

from local.harness import RunningStack
from tests.client.conftest import SinkTenant, unique

pytestmark = pytest.mark.e2e


def message(mid: str, **fields: object) -> dict[str, object]:
    return {"id": mid, "account_id": "sink", "from": "shop@example.com", "to": ["ada@example.org"],
            "subject": f"Subject {mid}", "body": "hello", **fields}


def test_every_route_of_the_openapi_document_has_a_client_method(local_stack: RunningStack) -> None:
    document = MailProxyClient(local_stack.api_url, None).openapi()
    served = {(method.upper(), path) for path, item in document["paths"].items() for method, operation in item.items()
              if "genro-mail-proxy" not in operation.get("tags", [])}  # those are for upstream's clients
    assert served - set(ROUTES) - NOT_CLIENT_ROUTES == set()
    assert all(callable(getattr(MailProxyClient, name)) for name in ROUTES.values())


def test_a_tenant_from_creation_to_deletion(local_stack: RunningStack) -> None:
    admin = MailProxyClient(local_stack.api_url, local_stack.admin_token)
    tenant_id = unique("lifecycle")
    created = admin.create_tenant(tenant_id, name="Life Cycle", client_base_url="https://app.example.com")
    assert created["tenant_id"] == tenant_id and created["api_key"]
    assert tenant_id in {t["tenant_id"] for t in admin.list_tenants()}
    admin.update_tenant(tenant_id, name="Renamed", active=False)
    shown = admin.get_tenant(tenant_id)
    assert shown["name"] == "Renamed" and shown["active"] is False
    assert tenant_id not in {t["tenant_id"] for t in admin.list_tenants(active_only=True)}

    own = MailProxyClient(local_stack.api_url, created["api_key"])
    assert own.status()["ok"] is True
    new_key = admin.new_api_key(tenant_id)
    with pytest.raises(Unauthorized):
        own.status()
    assert MailProxyClient(local_stack.api_url, new_key).get_tenant(tenant_id)["tenant_id"] == tenant_id
    assert admin.rotate_signing_secret(tenant_id, grace_seconds=0)["signing_secret"]
    admin.revoke_api_key(tenant_id)
    with pytest.raises(Unauthorized):
        MailProxyClient(local_stack.api_url, new_key).status()
    admin.delete_tenant(tenant_id)
    with pytest.raises(NotFound):
        admin.get_tenant(tenant_id)


def test_accounts_are_listed_shown_and_deleted_without_their_password(local_stack: RunningStack,
                                                                     sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    shop.add_account("relay", "smtp.example.com", 587, user="u@example.com", password="pw-e2e-client-1",
                     limit_per_minute=10)
    assert {a["id"] for a in shop.list_accounts()} == {"sink", "relay"}
    relay = shop.get_account("relay")
    assert relay["tls"] == "starttls" and relay["has_password"] is True and relay["limit_per_minute"] == 10
    assert "pw-e2e-client-1" not in str(shop.list_accounts()) + str(relay)
    shop.delete_account("relay")
    with pytest.raises(NotFound):
        shop.get_account("relay")


def test_a_message_is_sent_listed_suspended_deleted_and_cleaned_up(local_stack: RunningStack,
                                                                 sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    assert shop.add_messages([message("m1")]) == {"ok": True, "queued": 1, "rejected": []}
    record = shop.wait_for_message("m1", timeout=30)
    assert record["status"] == "sent" and record["history"][-1]["event_type"] == "sent"

    state = shop.suspend(batch_code="later")
    assert state["suspended_batches"] == ["later"]
    shop.add_messages([message("m2", batch_code="later")])
    shop.run_now()
    assert shop.get_message("m2")["status"] == "pending"
    assert shop.activate(batch_code="later")["suspended_batches"] == []
    assert shop.wait_for_message("m2", timeout=30)["status"] == "sent"

    shop.add_messages([message("m3", deferred_ts=int(time.time()) + 3600)])
    assert [m["id"] for m in shop.iter_messages(active_only=True)] == ["m3"]
    assert shop.delete_messages(["m3", "never"]) == {"ok": True, "removed": 1, "not_found": ["never"],
                                                     "unauthorized": [], "in_flight": []}
    assert shop.cleanup_messages(older_than_seconds=0) == 2
    assert list(shop.iter_messages()) == []


def test_iter_messages_walks_every_page(local_stack: RunningStack, sink_tenant: SinkTenant) -> None:
    admin = MailProxyClient(local_stack.api_url, local_stack.admin_token)
    admin.suspend(tenant_id=sink_tenant.tenant_id)  # keep them waiting: nothing to deliver here
    ids = [f"page-{i}" for i in range(7)]
    assert admin.add_messages([message(i) for i in ids], tenant_id=sink_tenant.tenant_id)["queued"] == 7
    walked = [m["id"] for m in admin.iter_messages(tenant_id=sink_tenant.tenant_id, page_size=3)]
    assert sorted(walked) == ids
    assert len(list(admin.iter_messages(tenant_id=sink_tenant.tenant_id, page_size=3, max_items=4))) == 4


def test_a_repeated_idempotency_key_gets_the_first_answer_and_queues_nothing_twice(
        local_stack: RunningStack, sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    shop.suspend()
    first = shop.add_messages([message("idem-1")], idempotency_key="key-1")
    again = shop.add_messages([message("idem-1")], idempotency_key="key-1")
    assert first == again == {"ok": True, "queued": 1, "rejected": []}
    with pytest.raises(Conflict):
        shop.add_messages([message("idem-2")], idempotency_key="key-1")


def test_the_real_error_answers_raise_their_exceptions(local_stack: RunningStack, sink_tenant: SinkTenant) -> None:
    admin = MailProxyClient(local_stack.api_url, local_stack.admin_token)
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    with pytest.raises(Unauthorized):
        MailProxyClient(local_stack.api_url, "not-a-token").list_tenants()
    with pytest.raises(Forbidden):
        shop.list_tenants()
    with pytest.raises(Forbidden):
        shop.list_accounts(tenant_id="someone-else")
    with pytest.raises(NotFound):
        shop.get_message("never-submitted")
    with pytest.raises(Conflict):
        admin.create_tenant(sink_tenant.tenant_id)
    with pytest.raises(ValidationFailed) as raised:
        shop.add_account("a", "smtp.example.com", 25)
    assert "port" in raised.value.fields and "25" in raised.value.fields["port"]


def test_an_invalid_message_is_rejected_and_the_others_are_queued(local_stack: RunningStack,
                                                                  sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    answer = shop.add_messages([message("good"), message("bad", to=["nobody"])])
    assert answer["queued"] == 1 and [r["id"] for r in answer["rejected"]] == ["bad"]
    assert shop.get_message("bad")["status"] == "error"


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="Django is not installed")
def test_the_django_backend_delivers_html_and_an_attachment(local_stack: RunningStack,
                                                            sink_tenant: SinkTenant) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL="web@example.com")
    from django.core.mail import EmailMultiAlternatives, get_connection

    connection = get_connection("mail_proxy_client.django.EmailBackend", url=local_stack.api_url,
                                token=sink_tenant.api_key, account="sink")
    mail = EmailMultiAlternatives("Django says hi", "plain text", "shop@example.com", ["ada@example.org"],
                                  connection=connection)
    mail.mail_proxy_id = unique("django")
    mail.attach_alternative("<p>html text</p>", "text/html")
    mail.attach("notes.txt", "attached words", "text/plain")
    assert mail.send() == 1

    record = MailProxyClient(local_stack.api_url, sink_tenant.api_key).wait_for_message(mail.mail_proxy_id)
    assert record["status"] == "sent", record
    delivered = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in local_stack.mail_files()]
    ours = next(m for m in delivered if m["X-Mail-Proxy-ID"] == f"{sink_tenant.tenant_id}/{mail.mail_proxy_id}")
    assert ours.get_body(("html",)).get_content().strip() == "<p>html text</p>"  # type: ignore[union-attr]
    attachments = {part.get_filename(): part.get_content() for part in ours.iter_attachments()}
    assert attachments == {"notes.txt": "attached words"}


def test_a_suppressed_address_is_listed_until_removed(local_stack: RunningStack, sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    shop.add_suppression("gone@example.org", reason="asked to stop")
    entries = list(shop.iter_suppressions())
    assert [(e["address"], e["source"], e["reason"]) for e in entries] == [
        ("gone@example.org", "manual", "asked to stop")]
    shop.remove_suppression("gone@example.org")
    assert list(shop.iter_suppressions()) == []


def test_add_messages_with_the_admin_token_and_no_tenant_raises_like_get_message(local_stack: RunningStack,
                                                                                 sink_tenant: SinkTenant) -> None:
    admin = MailProxyClient(local_stack.api_url, local_stack.admin_token)
    with pytest.raises(ValidationFailed, match="tenant_id is required"):
        admin.get_message("anything")
    with pytest.raises(ValidationFailed, match="tenant_id is required with the admin token: pass"):
        admin.add_messages([message(unique("no-tenant"))])
    assert admin.add_messages([message(unique("with-tenant"))], tenant_id=sink_tenant.tenant_id)["queued"] == 1


def test_search_by_recipient_subject_and_batch_walks_only_the_matches(local_stack: RunningStack,
                                                                      sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    shop.suspend()  # keep them waiting: only the search matters here
    batch = [{**message("find-1"), "to": ["Ann@Example.org"], "subject": "Spring sale", "batch_code": "spring"},
             {**message("find-2"), "to": ["bob@example.org"], "cc": ["ann@example.org"], "subject": "Receipt"},
             {**message("find-3"), "to": ["carl@example.org"], "subject": "Spring sale", "batch_code": "spring"}]
    assert shop.add_messages(batch)["queued"] == 3
    by_recipient = [m["id"] for m in shop.iter_messages(recipient="ann@example.org", page_size=1)]
    assert sorted(by_recipient) == ["find-1", "find-2"]
    assert [m["id"] for m in shop.iter_messages(recipient="ann@example.org", subject="sale")] == ["find-1"]
    assert sorted(m["id"] for m in shop.iter_messages(batch_code="spring")) == ["find-1", "find-3"]
    assert list(shop.iter_messages(since_ts=int(time.time()) + 3600)) == []


def test_a_dkim_domain_is_registered_rotated_and_removed_without_its_private_key(local_stack: RunningStack,
                                                                                 sink_tenant: SinkTenant) -> None:
    shop = MailProxyClient(local_stack.api_url, sink_tenant.api_key)
    domain = f"{sink_tenant.tenant_id}.example.com"
    registered = shop.register_dkim_domain(sink_tenant.tenant_id, domain, selector="s1")
    assert registered["domain"] == domain and registered["signing_selector"] == "s1"
    assert "PRIVATE KEY" not in repr(registered)
    rotated = shop.rotate_dkim_key(sink_tenant.tenant_id, domain, selector="s2")
    assert rotated["signing_selector"] == "s2" and {s["selector"] for s in rotated["selectors"]} == {"s1", "s2"}
    with pytest.raises(Conflict):
        shop.remove_dkim_selector(sink_tenant.tenant_id, domain, "s2")  # it still signs
    remaining = shop.remove_dkim_selector(sink_tenant.tenant_id, domain, "s1")["selectors"]
    assert {s["selector"] for s in remaining} == {"s2"}
    assert [d["domain"] for d in shop.list_dkim_domains(sink_tenant.tenant_id)] == [domain]
    shop.remove_dkim_domain(sink_tenant.tenant_id, domain)
    with pytest.raises(NotFound):
        shop.get_dkim_domain(sink_tenant.tenant_id, domain)
