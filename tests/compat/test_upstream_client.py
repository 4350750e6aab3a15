"""An application written for genro-mail-proxy 0.7.0 works unchanged: its own ``MailProxyClient`` drives this proxy.

The client runs in its own interpreter (tests/compat/upstream.py) against the API served on loopback by the
local gateway (authorizer first, then the api function, against moto), as the local stack serves it. The
sender runs in-process between the client's calls, so the messages the client submits reach an SMTP server
on loopback: each exactly once.
"""

from __future__ import annotations

from typing import Any

from tests.compat.upstream import Upstream, run_client
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.delivery import DeliveryHarness
from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer

Call = tuple[str, list[Any], dict[str, Any]]


def call(_operation: str, /, *args: Any, **kwargs: Any) -> Call:
    return (_operation, list(args), kwargs)


def ok(result: dict[str, Any]) -> Any:
    assert result["ok"], result
    return result["value"]


def msg(mid: str, **fields: Any) -> dict[str, Any]:
    return {"id": mid, "tenant_id": "acme", "account_id": "smtp1", "from": "news@example.com",
            "to": [f"{mid}@example.org"], "subject": f"Subject {mid}", "body": "Hello", **fields}


def test_upstream_client_manages_tenants_accounts_and_messages_and_its_messages_arrive_once(
        upstream: Upstream, server: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    setup = [
        call("health"),
        call("tenants.add", id="acme", name="Acme"),
        call("tenants.list"),
        call("tenants.get", "acme"),
        call("tenants.update", "acme", name="Acme Inc"),
        call("accounts.add", id="smtp1", tenant_id="acme", host="127.0.0.1", port=smtp.port, user=SMTP_USER,
             password=SMTP_PASSWORD, use_tls=True),
        call("accounts.add_pec", id="pec1", tenant_id="acme", host="smtp.pec.example.it", port=465,
             imap_host="imap.pec.example.it", user="u@pec.example.it", password="secret"),
        call("accounts.list", "acme"),
        call("accounts.get", "acme", "smtp1"),
        call("messages.add", id="m1", tenant_id="acme", account_id="smtp1", from_addr="news@example.com",
             to=["m1@example.org"], subject="Subject m1", body="Hello"),
        # add_batch takes upstream's from_addr as well as from
        call("messages.add_batch", [msg("m2"), {k: v for k, v in msg("m3", from_addr="news@example.com").items()
                                                if k != "from"}]),
        call("status"),
        call("instance.status"),
        call("run_now"),
        call("instance.run_now", "acme"),
        call("command_log.list", tenant_id="acme"),
    ]
    results = run_client(upstream, server, ADMIN_TOKEN, setup)
    (health, added, listed, got, updated, account, pec, accounts, account_got, one, batch, status, instance_status,
     run_now, run_now_tenant, commands) = results

    assert ok(health) is True
    assert ok(added)["id"] == "acme" and ok(added)["api_key"]
    assert [t["id"] for t in ok(listed)] == ["acme"] and ok(listed)[0]["__type__"] == "Tenant"
    assert ok(got)["id"] == "acme" and ok(got)["name"] == "Acme"
    assert ok(updated)["name"] == "Acme Inc"
    assert ok(account)["id"] == "smtp1" and ok(account)["use_tls"] is True and "password" not in ok(account)
    assert ok(pec)["is_pec_account"] is True and ok(pec)["imap"]["host"] == "imap.pec.example.it"
    assert {a["id"]: a["is_pec_account"] for a in ok(accounts)} == {"pec1": True, "smtp1": False}
    assert ok(account_got)["host"] == "127.0.0.1" and ok(account_got)["port"] == smtp.port
    assert ok(one) == {"id": "m1", "pk": "acme:m1"}
    assert ok(batch) == {"ok": True, "queued": 2, "rejected": []}
    assert ok(status)["ok"] is True and ok(status)["active"] is True
    assert ok(instance_status)["pending_messages"] == 3 and ok(instance_status)["scheduler_active"] is True
    assert ok(run_now) == {"ok": True} and ok(run_now_tenant) == {"ok": True}
    logged = ok(commands)
    assert {"create_tenant", "update_tenant", "add_account"} <= {c["endpoint"] for c in logged}
    assert all(c["__type__"] == "CommandLogEntry" and c["tenant_id"] == "acme" for c in logged)

    delivery.drain()
    received = smtp.wait_for_messages(3)
    assert sorted(r for m in received for r in m.rcpt_tos) == ["m1@example.org", "m2@example.org", "m3@example.org"]
    assert all(m.tls and m.auth_user == SMTP_USER for m in received)

    after = [
        call("messages.list", "acme"),
        call("messages.get", "m1", "acme"),
        call("messages.count_active"),
        call("messages.count_pending_for_tenant", "acme"),
        call("suspend", "acme", "spring"),
        call("tenants.suspend_batch", "acme", "autumn"),
        call("tenants.get_suspended_batches", "acme"),
        call("activate", "acme", "spring"),
        call("tenants.activate_batch", "acme"),
        call("tenants.get_suspended_batches", "acme"),
        call("messages.delete_batch", "acme", ["m2", "nope"]),
        call("messages.delete", "acme:m3"),
        call("messages.cleanup", "acme", older_than_seconds=0),
        call("messages.list", "acme"),
        call("instance.health"),
        call("command_log.export", tenant_id="acme"),
        call("accounts.delete", "acme", "pec1"),
    ]
    (listed_msgs, got_msg, active, pending, suspended, suspended_batch, batches, activated, activated_all,
     batches_after, deleted, deleted_one, cleaned, listed_after, instance_health, exported, pec_deleted
     ) = run_client(upstream, server, ADMIN_TOKEN, after)
    records = {m["id"]: m for m in ok(listed_msgs)}
    assert set(records) == {"m1", "m2", "m3"}
    assert all(m["status"] == "sent" and m["smtp_ts"] and m["from_addr"] == "news@example.com"
               for m in records.values())
    assert ok(got_msg)["id"] == "m1" and ok(got_msg)["to"] == ["m1@example.org"] and ok(got_msg)["pk"] == "acme:m1"
    assert ok(active) == 0 and ok(pending) == 0
    assert ok(suspended)["suspended_batches"] == ["spring"]
    assert ok(suspended_batch)["suspended_batches"] == ["autumn", "spring"]
    assert ok(batches) == ["autumn", "spring"]
    assert ok(activated)["suspended_batches"] == ["autumn"]
    assert ok(activated_all)["suspended_batches"] == [] and ok(batches_after) == []
    assert ok(deleted) == {"ok": True, "removed": 1, "not_found": ["nope"], "unauthorized": [], "in_flight": []}
    assert ok(deleted_one) is True
    assert ok(cleaned) == {"ok": True, "removed": 1}
    assert ok(listed_after) == []
    assert ok(instance_health) == {"status": "ok", "ok": True}
    assert {"create_tenant", "suspend", "activate"} <= {e["endpoint"] for e in ok(exported)}
    assert ok(pec_deleted) is True
    [entry] = run_client(upstream, server, ADMIN_TOKEN, [call("command_log.get", ok(commands)[0]["id"])])
    assert ok(entry)["id"] == ok(commands)[0]["id"] and ok(entry)["__type__"] == "CommandLogEntry"

    delivery.drain()
    delivery.tick()
    delivery.drain()
    assert len(smtp.messages) == 3  # each message reached the SMTP server once

    closing = [
        call("tenants.create_api_key", "acme"),
        call("tenants.revoke_api_key", "acme"),
        call("accounts.delete", "acme", "smtp1"),
        call("accounts.list", "acme"),
        call("tenants.delete", "acme"),
        call("tenants.list"),
    ]
    new_key, revoked, account_deleted, no_accounts, tenant_deleted, no_tenants = run_client(
        upstream, server, ADMIN_TOKEN, closing)
    assert ok(new_key)["api_key"] and ok(new_key)["tenant_id"] == "acme"
    assert ok(revoked)["ok"] is True
    assert ok(account_deleted) is True and ok(no_accounts) == []
    assert ok(tenant_deleted) is True and ok(no_tenants) == []

    missing = [call("instance.get"), call("instance.update", name="x"), call("instance.upgrade_to_ee"),
               call("instance.get_sync_status"), call("instance.get_bounce_config"),
               call("instance.set_bounce_config", enabled=True), call("instance.reload_bounce"),
               call("accounts.list_pec"), call("accounts.get_pec_ids"), call("command_log.purge", 0)]
    for answer in run_client(upstream, server, ADMIN_TOKEN, missing):
        assert answer["status"] == 501 and "not provided by this proxy" in answer["body"], answer


def test_upstream_client_with_a_tenant_token_reaches_its_own_tenant_and_nothing_else(
        upstream: Upstream, server: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    [acme, _other] = run_client(upstream, server, ADMIN_TOKEN, [
        call("tenants.add", id="acme", name="Acme"), call("tenants.add", id="other", name="Other")])
    key = ok(acme)["api_key"]
    own = [
        call("accounts.add", id="smtp1", tenant_id="acme", host="127.0.0.1", port=smtp.port, user=SMTP_USER,
             password=SMTP_PASSWORD, use_tls=True),
        call("messages.add_batch", [msg("t1")]),
        call("messages.list"),
        call("tenants.get", "acme"),
        call("accounts.list"),
        call("status"),
    ]
    account, batch, listed, tenant, accounts, status = run_client(upstream, server, key, own, tenant_id="acme")
    assert ok(account)["tenant_id"] == "acme"
    assert ok(batch)["queued"] == 1
    assert [m["id"] for m in ok(listed)] == ["t1"]
    assert ok(tenant)["id"] == "acme"
    assert [a["id"] for a in ok(accounts)] == ["smtp1"]
    assert [t["tenant_id"] for t in ok(status)["tenants"]] == ["acme"]

    foreign = [
        call("tenants.list"),
        call("tenants.get", "other"),
        call("tenants.add", id="evil"),
        call("tenants.update", "other", name="pwned"),
        call("tenants.delete", "other"),
        call("tenants.create_api_key", "acme"),
        call("tenants.revoke_api_key", "other"),
        call("accounts.list", "other"),
        call("accounts.add", id="x", tenant_id="other", host="127.0.0.1", port=2525),
        call("messages.list", "other"),
        call("messages.add_batch", [msg("x1", tenant_id="other")]),
        call("messages.delete_batch", "other", ["x1"]),
        call("messages.delete", "other:x1"),
        call("messages.cleanup", "other"),
        call("suspend", "other"),
        call("run_now", "other"),
        call("command_log.list"),
        call("instance.get"),
    ]
    answers = run_client(upstream, server, key, foreign, tenant_id="acme")
    statuses = {c[0] + repr(c[1]) + repr(c[2]): a.get("status") for c, a in zip(foreign, answers, strict=True)}
    assert all(not a["ok"] for a in answers), answers
    assert set(statuses.values()) <= {403, 501}, statuses
    assert answers[-1]["status"] == 501  # instance configuration has no equivalent; says so
    assert "not provided" in answers[-1]["body"]

    delivery.drain()
    assert [r for m in smtp.wait_for_messages(1) for r in m.rcpt_tos] == ["t1@example.org"]
    [other_after] = run_client(upstream, server, ADMIN_TOKEN, [call("messages.list", "other")])
    assert ok(other_after) == []
