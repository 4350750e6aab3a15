"""Delivery through a real SMTP server on loopback (STARTTLS + AUTH): the sender handler fed by SQS."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mail_proxy.domain import clock
from mail_proxy.domain import message_lifecycle as life
from tests.conftest import ApiClient, Stack, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, record, submit
from tests.fixtures.smtp_server import SMTP_PASSWORD, SMTP_USER, ScriptedSmtpServer


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtpServer]:
    with ScriptedSmtpServer(tls="starttls", auth=True) as server:
        yield server


@pytest.fixture
def delivery(stack: Stack, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    assert smtp.ca_file is not None
    monkeypatch.setenv("MAIL_PROXY_SMTP_CA_FILE", smtp.ca_file)
    reset_caches()
    # start at the beginning of a minute, so rate-limit windows cannot roll over during a test
    clock.advance(60 - (time.time() % 60) + 0.5)
    harness = DeliveryHarness(stack)
    yield harness
    harness.close()


@pytest.fixture
def tenant(api: ApiClient, smtp: ScriptedSmtpServer) -> str:
    token = api.create_tenant("acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="starttls", user=SMTP_USER,
                       password=SMTP_PASSWORD)
    return token


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_message_is_delivered_over_starttls_with_auth_and_proper_headers(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1", to=["a@example.org"], cc=["c@example.org"], bcc=["hidden@example.org"],
                                return_path="bounces@example.com", headers={"X-Campaign": "spring"}))
    delivery.drain()
    [received] = smtp.wait_for_messages(1)
    assert received.tls and received.auth_user == SMTP_USER
    assert received.mail_from == "bounces@example.com"
    assert set(received.rcpt_tos) == {"a@example.org", "c@example.org", "hidden@example.org"}
    msg = parsed(received.data)
    assert msg["Date"] and msg["Message-ID"]
    assert msg["X-Mail-Proxy-ID"] == "acme/m1"
    assert msg["X-Campaign"] == "spring"
    assert "hidden@example.org" not in received.data.decode()
    assert "Bcc" not in msg
    rec = record(api, tenant, "m1")
    assert rec["status"] == "sent" and rec["sent_ts"] and rec["attempts"] == 1
    assert [e["event_type"] for e in rec["history"]] == ["sent"]


def test_html_with_plain_alternative_is_multipart_alternative(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1", body="plain text", html_body="<p>html</p>"))
    delivery.drain()
    msg = parsed(smtp.wait_for_messages(1)[0].data)
    assert msg.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "text/html"]


def test_451_then_250_sends_once_after_backoff_with_original_content(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.reply("DATA", "451 4.3.0 try again later")
    submit(api, tenant, message("m1", subject="Original subject", body="Original body"))
    delivery.drain()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "deferred" and rec["attempts"] == 1
    assert "451" in rec["history"][-1]["description"]
    assert smtp.messages == []
    delivery.drain()  # not yet due: nothing happens
    assert record(api, tenant, "m1")["status"] == "deferred"

    clock.advance(60 * 1.1 + 130)
    delivery.tick()
    delivery.drain()
    [received] = smtp.wait_for_messages(1)
    msg = parsed(received.data)
    assert msg["Subject"] == "Original subject"
    assert msg.get_content().strip() == "Original body"
    rec = record(api, tenant, "m1")
    assert rec["status"] == "sent" and rec["attempts"] == 2
    assert [e["event_type"] for e in rec["history"]] == ["deferred", "sent"]
    clock.advance(4000)
    delivery.tick()
    delivery.drain()
    assert len(smtp.messages) == 1


def test_421_closing_the_connection_is_temporary(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.reply("MAIL", "421 4.7.0 too busy", close_after=True)
    submit(api, tenant, message("m1"))
    delivery.drain()
    assert record(api, tenant, "m1")["status"] == "deferred"


def test_550_is_an_error_at_once_with_the_reply(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.reply("DATA", "550 5.7.1 message rejected as spam")
    submit(api, tenant, message("m1"))
    delivery.drain()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "error" and "550" in rec["error"] and "spam" in rec["error"]
    clock.advance(10_000)
    delivery.tick()
    delivery.drain()
    assert smtp.messages == [] and record(api, tenant, "m1")["attempts"] == 1


def test_every_recipient_refused_with_553_is_an_error(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.refuse("x@example.org", "553 5.1.3 bad address")
    smtp.script.refuse("y@example.org", "553 5.1.3 bad address")
    submit(api, tenant, message("m1", to=["x@example.org", "y@example.org"]))
    delivery.drain()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "error" and "553" in rec["error"]


def test_one_refused_recipient_of_two_is_sent_with_the_refusal_recorded(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.refuse("x@example.org", "550 5.1.1 no such user")
    submit(api, tenant, message("m1", to=["x@example.org", "ok@example.org"]))
    delivery.drain()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "sent"
    assert "x@example.org" in rec["history"][-1]["metadata"]["refused"]
    assert smtp.wait_for_messages(1)[0].rcpt_tos == ("ok@example.org",)


def test_malformed_address_is_rejected_at_the_api_and_never_queued(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    answer = submit(api, tenant, message("m1", to=["not-an-address"]))
    assert answer["queued"] == 0 and answer["rejected"][0]["id"] == "m1"
    assert delivery.drain() == 0
    clock.advance(3600)
    delivery.tick()
    assert delivery.drain() == 0
    assert record(api, tenant, "m1")["status"] == "error"


def test_connection_dropped_mid_data_is_retried(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    smtp.script.drop("DATA")
    submit(api, tenant, message("m1"))
    delivery.drain()
    assert record(api, tenant, "m1")["status"] == "deferred"
    clock.advance(300)
    delivery.tick()
    delivery.drain()
    assert record(api, tenant, "m1")["status"] == "sent"
    assert len(smtp.messages) == 1


def test_retries_end_in_error_after_the_last_delay(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_RETRY_DELAYS", "10,10")
    reset_caches()
    delivery.sender_module.dispatcher.cache_clear()
    smtp.script.reply("DATA", "451 4.3.0 later", times=10)
    submit(api, tenant, message("m1"))
    for _ in range(4):
        delivery.drain()
        clock.advance(200)
        delivery.tick()
    rec = record(api, tenant, "m1")
    assert rec["status"] == "error" and rec["attempts"] == 3
    assert rec["error"].startswith("gave up after 3 attempts")


def test_the_same_record_delivered_twice_sends_one_email(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1"))
    sqs = boto3.client("sqs")
    url = delivery.stack.queue_url("SendQueueMedium")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                          "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": "arn",
                          "awsRegion": "us-east-1"} for m in received]}
    assert delivery.sender.invoke(event) == {"batchItemFailures": []}
    assert delivery.sender.invoke(event) == {"batchItemFailures": []}
    assert len(smtp.wait_for_messages(1)) == 1
    time.sleep(0.2)
    assert len(smtp.messages) == 1


def claim(repo: Any, tenant_id: str, message_id: str, *, owner: str, stage: str = life.STAGE_SMTP) -> bool:
    """Claim a message the way a sender does, as another (possibly dead) sender."""
    state = repo.get_states(tenant_id, [message_id])[message_id]
    now = clock.now_ts()
    transition = life.claim(life.Seen.of(state), owner=owner, lease_until=now + 180, now=now, stage=stage)
    return bool(repo.apply_transition(tenant_id, message_id, transition, now=now))


def test_two_senders_on_one_message_send_one_email(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1"))
    dispatcher = delivery.sender_module.dispatcher()
    # a second sender already holds the claim: this one must skip the message
    assert claim(dispatcher.repo, "acme", "m1", owner="other-sender")
    report = dispatcher.deliver("acme", ["m1"])
    assert report.skipped == 1 and report.sent == 0
    assert smtp.messages == []


def test_a_sender_that_died_before_sending_is_recovered_when_the_lease_expires(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1"))
    dispatcher = delivery.sender_module.dispatcher()
    # a sender claimed it to record an outcome and died; its SQS record was consumed
    assert claim(dispatcher.repo, "acme", "m1", owner="dead", stage=life.STAGE_OUTCOME)
    boto3.client("sqs").purge_queue(QueueUrl=delivery.stack.queue_url("SendQueueMedium"))
    assert record(api, tenant, "m1")["status"] == "sending"
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    assert record(api, tenant, "m1")["status"] == "sent"
    assert len(smtp.wait_for_messages(1)) == 1


def test_a_sender_that_died_during_the_smtp_transaction_never_sends_again(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1"))
    dispatcher = delivery.sender_module.dispatcher()
    # claimed for its SMTP transaction, then the sender died: the server may have the message already
    assert claim(dispatcher.repo, "acme", "m1", owner="dead")
    boto3.client("sqs").purge_queue(QueueUrl=delivery.stack.queue_url("SendQueueMedium"))
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    got = record(api, tenant, "m1")
    assert got["status"] == "error"
    assert "outcome unknown" in got["error"]
    time.sleep(0.2)
    assert smtp.messages == []


def test_a_message_never_queued_is_found_and_sent_by_the_scheduler(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("m1"))
    boto3.client("sqs").purge_queue(QueueUrl=delivery.stack.queue_url("SendQueueMedium"))
    delivery.tick()
    assert delivery.drain() == 0
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    assert record(api, tenant, "m1")["status"] == "sent"


def test_an_immediate_message_overtakes_a_low_priority_backlog(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, *[message(f"low{i}", priority="low") for i in range(30)])
    submit(api, tenant, message("urgent", priority="immediate"))
    delivery.poller.poll_once(delivery.sqs)
    first_batch_ids = [i for rec in delivery.batches[0] for i in __import__("json").loads(rec["body"])["ids"]]
    assert first_batch_ids == ["urgent"]
    first = parsed(smtp.wait_for_messages(1)[0].data)
    assert first["X-Mail-Proxy-ID"] == "acme/urgent"
    delivery.drain()
    assert len(smtp.wait_for_messages(31)) == 31


def test_rate_limit_defers_to_the_next_window_and_loses_nothing(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    api.create_account(tenant, "limited", host="127.0.0.1", port=smtp.port, tls="starttls", user=SMTP_USER,
                       password=SMTP_PASSWORD, limit_per_minute=5)
    submit(api, tenant, *[message(f"m{i:02d}", account_id="limited") for i in range(12)])
    delivery.drain()
    assert len(smtp.wait_for_messages(5)) == 5
    statuses = [record(api, tenant, f"m{i:02d}")["status"] for i in range(12)]
    assert statuses.count("sent") == 5 and statuses.count("deferred") == 7
    deferred = record(api, tenant, "m11")
    assert "rate_limit_exceeded" in deferred["history"][-1]["description"]
    assert deferred["deferred_ts"] % 60 == 0 and deferred["attempts"] == 0

    clock.advance(60 + 125)
    delivery.tick()
    delivery.drain()
    clock.advance(60 + 125)
    delivery.tick()
    delivery.drain()
    clock.advance(60 + 125)
    delivery.tick()
    delivery.drain()
    assert len(smtp.messages) == 12
    ids = sorted(parsed(m.data)["X-Mail-Proxy-ID"] for m in smtp.messages)
    assert ids == [f"acme/m{i:02d}" for i in range(12)]


def test_rate_limit_with_reject_fails_the_excess(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    api.create_account(tenant, "strict", host="127.0.0.1", port=smtp.port, tls="starttls", user=SMTP_USER,
                       password=SMTP_PASSWORD, limit_per_minute=5, limit_behavior="reject")
    submit(api, tenant, *[message(f"m{i:02d}", account_id="strict") for i in range(12)])
    delivery.drain()
    statuses = [record(api, tenant, f"m{i:02d}") for i in range(12)]
    assert sum(r["status"] == "sent" for r in statuses) == 5
    errors = [r for r in statuses if r["status"] == "error"]
    assert len(errors) == 7 and all("rate_limit_exceeded" in r["error"] for r in errors)


def test_suspended_batch_waits_and_activation_sends_it(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    assert api.post("/commands/suspend?batch_code=spring", token=tenant).status == 200
    submit(api, tenant, message("s1", batch_code="spring"), message("other", batch_code="autumn"))
    delivery.drain()
    clock.advance(700)
    delivery.tick()
    delivery.drain()
    assert [parsed(m.data)["X-Mail-Proxy-ID"] for m in smtp.messages] == ["acme/other"]
    assert record(api, tenant, "s1")["status"] == "pending"
    resp = api.post("/commands/activate?batch_code=spring", token=tenant)
    assert resp.status == 200, resp.text
    delivery.drain()
    assert record(api, tenant, "s1")["status"] == "sent"


def test_deferred_message_waits_until_its_time(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("later", deferred_ts=clock.now_ts() + 3600))
    delivery.tick()
    delivery.drain()
    assert record(api, tenant, "later")["status"] == "deferred" and smtp.messages == []
    clock.advance(3601)
    delivery.tick()
    delivery.drain()
    assert record(api, tenant, "later")["status"] == "sent"


def test_run_now_queues_due_messages_at_once(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("later", deferred_ts=clock.now_ts() + 120))
    clock.advance(121)
    assert api.post("/commands/run-now", token=tenant).json == {"ok": True}
    delivery.drain()
    assert record(api, tenant, "later")["status"] == "sent"


def test_wrong_smtp_password_is_a_permanent_error(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    api.create_account(tenant, "badpw", host="127.0.0.1", port=smtp.port, tls="starttls", user=SMTP_USER,
                       password="wrong")
    submit(api, tenant, message("m1", account_id="badpw"), message("m2", account_id="badpw"))
    delivery.drain()
    for mid in ("m1", "m2"):
        rec = record(api, tenant, mid)
        assert rec["status"] == "error" and "535" in rec["error"]
