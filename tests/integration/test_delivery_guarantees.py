"""Regression tests for the delivery guarantees: never twice, nothing lost, a failure stays where it starts.

Each test reproduces a defect found from outside (issues 11 and 17) and asserts the guarantee that broke.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_PREFIX, STATE_SK, account_sk, message_pk, tenant_pk
from mail_proxy.adapters.dynamodb.table import item_key
from mail_proxy.domain import clock
from mail_proxy.domain import message_lifecycle as life
from mail_proxy.domain.models import MAX_RECIPIENTS
from mail_proxy.errors import ThrottledError
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message
from tests.fixtures.delivery import DeliveryHarness, record, submit
from tests.fixtures.smtp_server import ScriptedSmtpServer


class InvocationKilled(BaseException):
    """Lambda stopping the function: nothing in the handler can catch it."""


def proxy_ids(smtp: ScriptedSmtpServer) -> list[str]:
    ids = []
    for received in smtp.messages:
        for line in received.data.decode(errors="replace").splitlines():
            if line.lower().startswith("x-mail-proxy-id:"):
                ids.append(line.split(":", 1)[1].strip())
    return ids


def expire_leases_and_recover(delivery: DeliveryHarness, rounds: int = 3) -> None:
    for _ in range(rounds):
        clock.advance(1000)
        delivery.tick()
        delivery.drain()


def test_a_message_with_hundreds_of_refused_recipients_is_sent_once_and_never_again(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    refused = [f"nobody{i}@example.org" for i in range(999)]
    long_reply = "550 5.1.1 " + "mailbox unavailable, " * 40
    for address in refused:
        smtp.script.refuse(address, long_reply)
    submit(api, tenant, message("wide", to=["ok@example.org", *refused]))
    delivery.drain()
    got = record(api, tenant, "wide")
    assert got["status"] == "sent"
    sent = got["history"][-1]["metadata"]
    assert sent["refused_count"] == 999 and len(sent["refused"]) == life.REFUSALS_KEPT
    assert all(len(reply) <= life.REPLY_CHARS for reply in sent["refused"].values())
    expire_leases_and_recover(delivery)
    assert proxy_ids(smtp) == ["acme/wide"]


def test_more_recipients_than_the_limit_are_rejected_at_submission(api: ApiClient, tenant: str) -> None:
    to = [f"r{i}@example.org" for i in range(MAX_RECIPIENTS + 1)]
    answer = submit(api, tenant, message("too-wide", to=to))
    assert answer["queued"] == 0
    assert "too many recipients" in answer["rejected"][0]["reason"]


def test_an_outcome_too_large_to_write_falls_back_to_a_minimal_sent_record(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = delivery.sender_module.dispatcher().repo
    real = repo.apply_transition
    refused_first: list[str] = []

    def item_too_large(tenant_id: str, message_id: str, transition: life.Transition, *, now: int) -> bool:
        if transition.name == "accepted" and not refused_first:
            refused_first.append(message_id)
            raise ClientError({"Error": {"Code": "ValidationException",
                                         "Message": "Item size has exceeded the maximum allowed size"}},
                              "UpdateItem")
        return bool(real(tenant_id, message_id, transition, now=now))

    monkeypatch.setattr(repo, "apply_transition", item_too_large)
    submit(api, tenant, message("big1"), message("big2"))
    delivery.drain()
    assert refused_first == ["big1"]
    assert record(api, tenant, "big1")["status"] == "sent"
    assert record(api, tenant, "big2")["status"] == "sent"
    expire_leases_and_recover(delivery)
    assert sorted(proxy_ids(smtp)) == ["acme/big1", "acme/big2"]


def test_an_outcome_the_table_keeps_refusing_is_written_later_and_never_resent(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = delivery.sender_module.dispatcher()
    real = dispatcher.repo.apply_transition
    table_down = True

    def throttled(tenant_id: str, message_id: str, transition: life.Transition, *, now: int) -> bool:
        if table_down and transition.name == "accepted":
            raise ThrottledError("the table is busy, retry shortly", retry_after=2)
        return bool(real(tenant_id, message_id, transition, now=now))

    monkeypatch.setattr(dispatcher.repo, "apply_transition", throttled)
    submit(api, tenant, message("t1"))
    delivery.drain()
    assert record(api, tenant, "t1")["status"] == "sending"  # sent, its lease keeps everyone off it
    table_down = False
    dispatcher.new_invocation()  # the container's next invocation writes what it kept
    assert record(api, tenant, "t1")["status"] == "sent"
    expire_leases_and_recover(delivery)
    assert proxy_ids(smtp) == ["acme/t1"]


def test_a_sender_killed_after_the_first_message_of_a_group_does_not_send_it_again(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = delivery.sender_module.dispatcher()
    real = dispatcher.repo.apply_transition
    claims: list[str] = []

    def killed_at_second_claim(tenant_id: str, message_id: str, transition: life.Transition, *, now: int) -> bool:
        if transition.name == "claim":
            claims.append(message_id)
            if len(claims) == 2:
                raise InvocationKilled
        return bool(real(tenant_id, message_id, transition, now=now))

    monkeypatch.setattr(dispatcher.repo, "apply_transition", killed_at_second_claim)
    submit(api, tenant, message("k1"), message("k2"), message("k3"))
    with pytest.raises(InvocationKilled):
        dispatcher.deliver("acme", ["k1", "k2", "k3"])
    monkeypatch.setattr(dispatcher.repo, "apply_transition", real)
    assert record(api, tenant, "k1")["status"] == "sent"  # recorded right after its 250
    expire_leases_and_recover(delivery)
    assert sorted(proxy_ids(smtp)) == ["acme/k1", "acme/k2", "acme/k3"]
    assert {record(api, tenant, m)["status"] for m in ("k1", "k2", "k3")} == {"sent"}


def test_a_stale_sender_never_brings_back_a_message_deleted_after_its_lease(
        api: ApiClient, tenant: str, delivery: DeliveryHarness) -> None:
    repo = delivery.sender_module.dispatcher().repo
    submit(api, tenant, message("gone"))
    state = repo.get_states("acme", ["gone"])["gone"]
    seen = life.Seen.of(state)
    now = clock.now_ts()
    assert repo.apply_transition("acme", "gone", life.claim(seen, owner="slow", lease_until=now + 180, now=now,
                                                            stage=life.STAGE_SMTP), now=now)
    answer = api.post("/commands/delete-messages", token=tenant, body={"ids": ["gone"]}).json
    assert answer["removed"] == 0 and answer["in_flight"] == ["gone"]  # a sender holds it
    clock.advance(200)
    answer = api.post("/commands/delete-messages", token=tenant, body={"ids": ["gone"]}).json
    assert answer["removed"] == 1  # its lease ran out: the sender is gone
    late = life.accepted(seen, owner="slow", now=clock.now_ts(), event_id="e1")
    assert repo.apply_transition("acme", "gone", late, now=clock.now_ts()) is False
    assert api.get("/messages/gone", token=tenant).status == 404
    items = [i for i in table_items(delivery) if i["pk"]["S"] == message_pk("acme", "gone")]
    assert items == []


def table_items(delivery: DeliveryHarness) -> list[dict[str, Any]]:
    return list(boto3.client("dynamodb").scan(TableName=delivery.stack.table_name)["Items"])


def test_resubmitting_a_message_while_it_is_being_sent_is_refused_and_loses_nothing(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    repo = delivery.sender_module.dispatcher().repo
    submit(api, tenant, message("r1", subject="first"))
    seen = life.Seen.of(repo.get_states("acme", ["r1"])["r1"])
    now = clock.now_ts()
    assert repo.apply_transition("acme", "r1", life.claim(seen, owner="busy", lease_until=now + 180, now=now,
                                                          stage=life.STAGE_SMTP), now=now)
    answer = submit(api, tenant, message("r1", subject="second"))
    assert answer["queued"] == 0
    assert answer["rejected"] == [{"id": "r1", "reason": "message is being sent"}]


def test_missing_content_fails_that_message_alone_and_its_record_still_shows(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    submit(api, tenant, message("large", body="x" * 40_000), message("small"))
    s3 = boto3.client("s3")
    bucket = delivery.stack.resources.resolved["AttachmentBucket"]
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="payloads/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    delivery.drain()
    large = record(api, tenant, "large")
    assert large["status"] == "error" and large["error"] == "stored message content is missing"
    assert large["message"] is None
    assert record(api, tenant, "small")["status"] == "sent"
    assert api.get("/messages", token=tenant).status == 200
    assert proxy_ids(smtp) == ["acme/small"]


def test_one_account_that_cannot_be_used_does_not_hold_up_the_others(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer, stack: Stack) -> None:
    api.create_account(tenant, "broken", host="127.0.0.1", port=smtp.port, tls="none", user="u", password="p")
    ddb = boto3.client("dynamodb")
    ddb.update_item(TableName=stack.table_name, Key=item_key(tenant_pk("acme"), account_sk("broken")),
                    UpdateExpression="SET password = :p", ExpressionAttributeValues={":p": {"S": "ENC:zz:garbage"}})
    submit(api, tenant, message("b1", account_id="broken"), message("g1"))
    delivery.sender_module.dispatcher().deliver("acme", ["b1", "g1"])
    assert record(api, tenant, "g1")["status"] == "sent"
    broken = record(api, tenant, "b1")
    assert broken["status"] == "deferred"  # retried with backoff, never left "sending"
    assert "internal error" in broken["history"][-1]["description"]


@pytest.mark.parametrize("deferred_ts", [10**40, 10**10, "31 days"])
def test_deferred_ts_beyond_the_bound_is_rejected_not_a_server_error(
        api: ApiClient, tenant: str, deferred_ts: Any) -> None:
    value = clock.now_ts() + 31 * 86400 if deferred_ts == "31 days" else deferred_ts
    answer = submit(api, tenant, message("far", deferred_ts=value))
    assert answer["queued"] == 0 and "days ahead" in answer["rejected"][0]["reason"]


def test_deferred_ts_within_the_bound_is_accepted(api: ApiClient, tenant: str) -> None:
    assert submit(api, tenant, message("near", deferred_ts=clock.now_ts() + 29 * 86400))["queued"] == 1


def test_held_messages_never_starve_the_scheduler_and_come_back_on_activation(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, smtp: ScriptedSmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mail_proxy.usecases import scheduling

    monkeypatch.setattr(scheduling, "MAX_PER_TENANT_RUN", 3)
    assert api.post("/commands/suspend?batch_code=spring", token=tenant).status == 200
    submit(api, tenant, *[message(f"h{i}", batch_code="spring") for i in range(5)])
    submit(api, tenant, message("later", deferred_ts=clock.now_ts() + 120))
    clock.advance(300)
    delivery.tick()
    delivery.drain()
    assert proxy_ids(smtp) == ["acme/later"]  # five held messages did not hide it
    assert api.post("/commands/activate?batch_code=spring", token=tenant).status == 200
    for _ in range(3):
        delivery.tick()
        delivery.drain()
    assert sorted(proxy_ids(smtp)) == ["acme/h0", "acme/h1", "acme/h2", "acme/h3", "acme/h4", "acme/later"]


def test_rate_limit_slots_of_messages_not_sent_are_given_back(
        api: ApiClient, delivery: DeliveryHarness, smtp: ScriptedSmtpServer) -> None:
    token = api.create_tenant("acme")
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None,
                       limit_per_minute=2)
    smtp.script.reply("DATA", "451 4.3.0 try later", times=2)
    submit(api, token, message("a1"), message("a2"))
    delivery.drain()
    assert {record(api, token, m)["status"] for m in ("a1", "a2")} == {"deferred"}
    submit(api, token, message("a3"))
    delivery.drain()
    assert record(api, token, "a3")["status"] == "sent"  # the two failed sends did not use the window up


def test_rejected_messages_of_a_tenant_without_report_url_expire(
        api: ApiClient, tenant: str, stack: Stack) -> None:
    submit(api, tenant, message("bad", to=["not an address"]))
    item = boto3.client("dynamodb").get_item(TableName=stack.table_name,
                                             Key=item_key(message_pk("acme", "bad"), STATE_SK))
    assert int(item["Item"]["expires_at"]["N"]) > clock.now_ts()


def test_an_admin_sees_in_flight_ids_too(api: ApiClient, tenant: str) -> None:
    submit(api, tenant, message("x1"))
    answer = api.post("/commands/delete-messages?tenant_id=acme", token=ADMIN_TOKEN, body={"ids": ["x1", "nope"]})
    assert answer.status == 200
    assert answer.json["removed"] == 1 and answer.json["not_found"] == ["nope"] and answer.json["in_flight"] == []


def _payload_expiry(stack: Stack, mid: str) -> int | None:
    items = boto3.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": message_pk("acme", mid)}})["Items"]
    [payload] = [i for i in items if i["sk"]["S"].startswith(PAYLOAD_PREFIX)]
    return int(payload["expires_at"]["N"]) if "expires_at" in payload else None


def test_a_held_messages_content_does_not_expire_until_it_is_released(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, stack: Stack) -> None:
    assert api.post("/commands/suspend?batch_code=slow", token=tenant).status == 200
    submit(api, tenant, message("held", batch_code="slow"))
    assert _payload_expiry(stack, "held") is None
    clock.advance(60 * 86400)  # held for two months
    assert api.post("/commands/activate?batch_code=slow", token=tenant).status == 200
    expiry = _payload_expiry(stack, "held")
    assert expiry is not None and expiry > clock.now_ts() + 29 * 86400


def _content_objects(delivery: DeliveryHarness) -> list[str]:
    bucket = delivery.stack.resources.resolved["AttachmentBucket"]
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="payloads/")
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def test_content_in_s3_lives_exactly_as_long_as_its_payload_item(
        api: ApiClient, tenant: str, delivery: DeliveryHarness, stack: Stack) -> None:
    submit(api, tenant, message("big", body="x" * 40_000, deferred_ts=clock.now_ts() + 3600))
    [first] = _content_objects(delivery)
    submit(api, tenant, message("big", body="y" * 40_000, deferred_ts=clock.now_ts() + 3600))  # replaced
    delivery.report()
    [second] = _content_objects(delivery)
    assert second != first  # the replaced content went with its payload item
    ddb = boto3.client("dynamodb")
    items = ddb.query(TableName=stack.table_name, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": message_pk("acme", "big")}})["Items"]
    [payload] = [i for i in items if i["sk"]["S"].startswith(PAYLOAD_PREFIX)]
    ddb.delete_item(TableName=stack.table_name, Key={"pk": payload["pk"], "sk": payload["sk"]})  # as its TTL would
    delivery.report()
    assert _content_objects(delivery) == []
