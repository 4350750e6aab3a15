"""Delivery reports to a real HTTP receiver on loopback: shapes, auth, signature, retries, parking, quiet."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mail_proxy.domain import clock
from mail_proxy.security.report_signing import verify
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, submit
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer


@pytest.fixture
def delivery(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("MAIL_PROXY_REPORT_BACKOFF_SECONDS", "0")
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, tenant_id: str, url: str, **fields: Any) -> dict[str, str]:
    resp = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": tenant_id, "client_base_url": url, **fields})
    assert resp.status == 201, resp.text
    token = resp.json["api_key"]
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return {"token": token, "signing_secret": resp.json["signing_secret"]}


def test_sent_and_error_events_arrive_signed_with_bearer_auth(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url,
                        client_auth={"method": "bearer", "token": "app-bearer-token-123"})
    submit(api, creds["token"], message("ok1"), message("bad1", to=["nobody"]))
    delivery.drain()
    delivery.report()
    items = {item["id"]: item for item in receiver.reports()}
    assert set(items) == {"ok1", "bad1"}
    assert items["ok1"]["event"] == "sent" and isinstance(items["ok1"]["sent_ts"], int)
    assert items["bad1"]["event"] == "error" and "to" in items["bad1"]["error"] and items["bad1"]["error_ts"]
    assert all(item["event_id"] for item in items.values())
    for call in receiver.calls:
        assert call.path == "/mail-proxy/sync"
        assert call.headers["authorization"] == "Bearer app-bearer-token-123"
        assert verify(call.headers["x-mail-proxy-signature"], call.body, creds["signing_secret"])
        assert not verify(call.headers["x-mail-proxy-signature"], call.body + b" ", creds["signing_secret"])
    record = api.get("/messages/ok1", token=creds["token"]).json
    assert record["history"][-1]["reported_ts"]


def test_basic_auth_and_a_custom_sync_path(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url + "/base", client_sync_path="/hooks/mail",
                        client_auth={"method": "basic", "user": "app", "password": "s3cret-basic"})
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    call = receiver.calls[0]
    assert call.path == "/base/hooks/mail"
    assert call.headers["authorization"] == "Basic " + base64.b64encode(b"app:s3cret-basic").decode()


def test_deferred_event_is_reported_with_its_retry_time(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    smtp.script.reply("DATA", "451 4.3.0 later")
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    [item] = receiver.reports()
    assert item["event"] == "deferred" and item["deferred_ts"] > clock.now_ts() and "451" in item["deferred_reason"]


def test_500_three_times_then_200_delivers_each_event_once_and_loses_none(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(500, times=3)
    submit(api, creds["token"], *[message(f"m{i}") for i in range(5)])
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 4
    acknowledged = receiver.calls[-1].json["delivery_report"]
    assert sorted(i["id"] for i in acknowledged) == [f"m{i}" for i in range(5)]
    assert len({i["event_id"] for i in acknowledged}) == 5
    for i in range(5):
        history = api.get(f"/messages/m{i}", token=creds["token"]).json["history"]
        assert all(e["reported_ts"] for e in history)


def test_an_application_down_for_a_day_gets_its_reports_parked_then_resent_on_run_now(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(503, times=1000)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report(max_rounds=200)
    attempts = len(receiver.calls)
    assert attempts == 40  # PARK_AFTER_ATTEMPTS: with the production backoff that is more than 24 hours
    parked_url = delivery.stack.queue_url("ReportParkedQueue")
    sqs = boto3.client("sqs")
    depth = sqs.get_queue_attributes(QueueUrl=parked_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "1"
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"] is None

    receiver.script.clear()
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    assert [i["id"] for i in receiver.reports()][-1] == "m1"
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"]


def test_two_tenants_each_receive_only_their_own_events_with_their_own_credentials(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    with ReportReceiver() as app_a, ReportReceiver() as app_b:
        a = make_tenant(api, smtp, "tenant-a", app_a.url, client_auth={"method": "bearer", "token": "token-of-a"})
        b = make_tenant(api, smtp, "tenant-b", app_b.url, client_auth={"method": "bearer", "token": "token-of-b"})
        submit(api, a["token"], message("a1"), message("a2"))
        submit(api, b["token"], message("b1"))
        delivery.drain()
        delivery.report()
        assert sorted(i["id"] for i in app_a.reports()) == ["a1", "a2"]
        assert [i["id"] for i in app_b.reports()] == ["b1"]
        assert {c.headers["authorization"] for c in app_a.calls} == {"Bearer token-of-a"}
        assert all(verify(c.headers["x-mail-proxy-signature"], c.body, b["signing_secret"]) for c in app_b.calls)
        assert not any(verify(c.headers["x-mail-proxy-signature"], c.body, a["signing_secret"]) for c in app_b.calls)


def test_queued_asks_for_another_sync_at_once_but_boundedly(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "queued": 3}, times=100)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 5  # MAX_SYNCS_PER_RECORD
    assert [c.json["delivery_report"] for c in receiver.calls[1:]] == [[]] * 4


def test_next_sync_after_keeps_the_proxy_quiet_until_then(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "next_sync_after": clock.now_ts() + 600})
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1  # quiet: m2's report waits
    tenant = delivery.sender_module.dispatcher().repo.get_tenant("acme")
    assert tenant.report_quiet_until <= clock.now_ts() + 600


def test_an_idle_tenant_gets_a_heartbeat_sync_every_five_minutes(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    make_tenant(api, smtp, "acme", receiver.url)
    make_tenant(api, smtp, "silent", "")
    delivery.tick()
    delivery.report()
    assert len(receiver.calls) == 1 and receiver.calls[0].json == {"delivery_report": []}
    delivery.tick()
    delivery.report()
    assert len(receiver.calls) == 1  # synced less than five minutes ago
    clock.advance(301)
    delivery.tick()
    delivery.report()
    assert len(receiver.calls) == 2


def test_a_rotated_signing_secret_signs_with_both_during_the_grace_period(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    rotated = api.post("/tenant/acme/signing-secret?grace_seconds=3600", token=creds["token"])
    assert rotated.status == 200, rotated.text
    new_secret = rotated.json["signing_secret"]
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    call = receiver.calls[-1]
    assert verify(call.headers["x-mail-proxy-signature"], call.body, new_secret)
    assert verify(call.headers["x-mail-proxy-signature"], call.body, creds["signing_secret"])
    clock.advance(3601)
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    delivery.report()
    call = receiver.calls[-1]
    assert verify(call.headers["x-mail-proxy-signature"], call.body, new_secret, now=time.time() + 3601)
    assert not verify(call.headers["x-mail-proxy-signature"], call.body, creds["signing_secret"],
                      now=time.time() + 3601)


def test_a_report_url_pointing_at_private_addresses_is_refused_outside_local_mode(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.adapters.outbound_http import OutboundRefused, post

    for url in ("https://169.254.169.254/latest/meta-data", "https://10.0.0.1/sync", "http://127.0.0.1:9/x",
                "https://[::1]/sync", "https://[::ffff:10.0.0.1]/sync", "ftp://example.com/x"):
        with pytest.raises(OutboundRefused):
            post(url, b"{}", {}, allow_loopback=False)


def test_reports_of_a_tenant_whose_url_is_private_are_never_posted_and_retried(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_ALLOW_LOOPBACK", "0")
    monkeypatch.setenv("MAIL_PROXY_ALLOWED_RELAY_NETWORKS", "127.0.0.0/8")  # the SMTP sink; never report URLs
    reset_caches()
    delivery.reporter_module.wiring.cache_clear()
    creds = make_tenant(api, smtp, "acme", "https://169.254.169.254")
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report(max_rounds=100)
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"] is None


# ------------------------------------------------------------------ order, once, whatever the application answers


@pytest.fixture
def delivery_with_backoff(stack: Stack) -> Iterator[DeliveryHarness]:
    """The production backoff: a failed report is hidden for about 30 s of real time (SQS's own clock)."""
    reset_caches()
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


@pytest.fixture
def park_after_3(monkeypatch: pytest.MonkeyPatch) -> int:
    """Park after 3 failed attempts instead of 40 (one test above keeps the production count)."""
    from mail_proxy.usecases import reporting

    monkeypatch.setattr(reporting, "PARK_AFTER_ATTEMPTS", 3)
    return 3


def pending_records(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def acknowledged_items(receiver: ReportReceiver, after: int = 0) -> list[dict[str, Any]]:
    """The delivery_report items of the calls from index ``after`` on (those the receiver answered 2xx)."""
    return [item for call in receiver.calls[after:] for item in call.json.get("delivery_report", [])]


def route_new_events(delivery: DeliveryHarness) -> None:
    while delivery.stream_poller.poll_once(delivery.streams):
        pass


def test_events_of_a_message_arrive_in_order_across_parking_and_run_now(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver,
        park_after_3: int) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    smtp.script.reply("DATA", "451 4.3.0 later")
    receiver.answer(503, times=park_after_3)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 1  # the `deferred` is parked
    clock.advance(3 * 3600)
    delivery.tick()
    delivery.drain()
    route_new_events(delivery)  # the `sent` waits on the reports queue, ahead of anything redriven
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    m1 = [item for item in acknowledged_items(receiver, after=park_after_3) if item["id"] == "m1"]
    assert [item["event"] for item in m1] == ["deferred", "sent"]
    assert len({item["event_id"] for item in m1}) == 2  # each acknowledged once
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 0
    assert all(e["reported_ts"] for e in api.get("/messages/m1", token=creds["token"]).json["history"])


def test_acknowledged_events_are_not_resent_when_the_follow_up_sync_fails(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "queued": 2})
    receiver.answer(500, times=100)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert [c.json["delivery_report"] != [] for c in receiver.calls] == [True, False]
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 0
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"]


@pytest.mark.parametrize("next_sync_after", [float("nan"), float("inf"), float("-inf"), "soon", True])
def test_a_non_finite_or_garbage_next_sync_after_is_ignored(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver,
        next_sync_after: Any) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "next_sync_after": next_sync_after})  # NaN/Infinity: what json.dumps writes
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1  # acknowledged once, never re-sent
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"]
    assert delivery.reporter_module.wiring()[0].repo.get_tenant("acme").report_quiet_until is None
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    delivery.report()
    assert [i["id"] for i in receiver.reports()] == ["m1", "m2"]  # not quiet


@pytest.mark.parametrize("next_sync_after", [1e38, 4102444800, 10**40])  # 1e38, the year 2100
def test_a_far_next_sync_after_is_clamped_to_an_hour_of_quiet(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver,
        next_sync_after: Any) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "next_sync_after": next_sync_after})
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"]
    quiet_until = delivery.reporter_module.wiring()[0].repo.get_tenant("acme").report_quiet_until
    assert clock.now_ts() < quiet_until <= clock.now_ts() + 3600


def test_hides_while_the_application_asked_for_quiet_never_park_a_report(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.adapters.report_queue import ReportQueue

    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "next_sync_after": clock.now_ts() + 3600})
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    hide = ReportQueue.delay
    monkeypatch.setattr(ReportQueue, "delay", lambda self, receipt, seconds: hide(self, receipt, 0))
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    route_new_events(delivery)
    for _ in range(45):  # each receive finds the tenant quiet and hides the report again (here for 0 s)
        delivery.report_poller.poll_once(delivery.sqs)
    assert len(receiver.calls) == 1
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 0
    clock.advance(3601)
    delivery.report()
    assert [i["id"] for i in receiver.reports()] == ["m1", "m2"]


def test_a_report_failing_near_the_queues_retention_is_parked_not_lost(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(503)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    route_new_events(delivery)
    clock.advance(12 * 24 * 3600)  # SQS drops a record silently after 14 days
    delivery.report()
    assert len(receiver.calls) == 1
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 1


def test_a_report_kept_waiting_by_quiet_periods_near_the_queues_retention_is_parked_not_lost(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    route_new_events(delivery)
    clock.advance(12 * 24 * 3600)
    repo = delivery.reporter_module.wiring()[0].repo
    repo.set_sync_state("acme", last_sync_ts=clock.now_ts(), quiet_until=clock.now_ts() + 600)
    delivery.report()
    assert receiver.calls == []
    assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 1


def test_one_empty_sync_at_most_is_pending_while_the_endpoint_is_down_for_an_hour(
        api: ApiClient, delivery_with_backoff: DeliveryHarness, smtp: ScriptedSmtpServer,
        receiver: ReportReceiver) -> None:
    delivery = delivery_with_backoff
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(503, times=1000)
    reports_url = delivery.stack.queue_url("ReportQueue")
    for _minute in range(60):
        delivery.tick()
        delivery.report()
        assert pending_records(reports_url) <= 1
        clock.advance(60)
    down_calls = len(receiver.calls)
    assert 1 <= down_calls <= 5  # retried with backoff, not once a minute
    receiver.script.clear()
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    assert [c.json for c in receiver.calls[down_calls:]] == [{"delivery_report": []}]  # no flood on recovery
    assert pending_records(reports_url) == 0


def test_run_now_ends_the_backoff_of_a_failed_report_at_once(
        api: ApiClient, delivery_with_backoff: DeliveryHarness, smtp: ScriptedSmtpServer,
        receiver: ReportReceiver) -> None:
    delivery = delivery_with_backoff
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(503)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1  # hidden for about 30 s
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    assert [i["id"] for i in acknowledged_items(receiver, after=1)] == ["m1"]
    assert api.get("/messages/m1", token=creds["token"]).json["history"][-1]["reported_ts"]


def test_run_now_ends_a_quiet_period_at_once(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver) -> None:
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(200, {"ok": True, "next_sync_after": clock.now_ts() + 600})
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    delivery.report()
    assert len(receiver.calls) == 1  # m2 hidden for the quiet period
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    assert [i["id"] for i in receiver.reports()] == ["m1", "m2"]


def test_run_now_redrives_every_parked_report_of_the_tenant_behind_other_tenants_parked_ones(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, receiver: ReportReceiver,
        park_after_3: int) -> None:
    sqs = boto3.client("sqs")
    parked_url = delivery.stack.queue_url("ReportParkedQueue")
    for i in range(25):  # another tenant's parked batches come first in the parked queue
        sqs.send_message(QueueUrl=parked_url, MessageGroupId="other",
                         MessageBody=json.dumps({"tenant_id": "other", "kind": "events", "events": []}),
                         MessageDeduplicationId=f"other-{i}")
    creds = make_tenant(api, smtp, "acme", receiver.url)
    receiver.answer(503, times=2 * park_after_3)
    submit(api, creds["token"], message("m1"))
    delivery.drain()
    delivery.report()
    submit(api, creds["token"], message("m2"))
    delivery.drain()
    delivery.report()
    assert pending_records(parked_url) == 27
    assert api.post("/commands/run-now", token=creds["token"]).status == 200
    delivery.report()
    assert sorted(i["id"] for i in acknowledged_items(receiver, after=2 * park_after_3)) == ["m1", "m2"]
    assert pending_records(parked_url) == 25  # the other tenant's stay parked, visible again
    visible = sqs.get_queue_attributes(QueueUrl=parked_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "25"


def test_an_admin_run_now_without_a_tenant_redrives_every_tenants_parked_reports(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, park_after_3: int) -> None:
    with ReportReceiver() as app_a, ReportReceiver() as app_b:
        a = make_tenant(api, smtp, "tenant-a", app_a.url)
        b = make_tenant(api, smtp, "tenant-b", app_b.url)
        app_a.answer(503, times=park_after_3)
        app_b.answer(503, times=park_after_3)
        submit(api, a["token"], message("a1"))
        submit(api, b["token"], message("b1"))
        delivery.drain()
        delivery.report()
        assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 2
        assert api.post("/commands/run-now", token=ADMIN_TOKEN).status == 200
        delivery.report()
        assert [i["id"] for i in acknowledged_items(app_a, after=park_after_3)] == ["a1"]
        assert [i["id"] for i in acknowledged_items(app_b, after=park_after_3)] == ["b1"]
        assert pending_records(delivery.stack.queue_url("ReportParkedQueue")) == 0
