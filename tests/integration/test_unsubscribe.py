"""One-click unsubscribe (RFC 8058): the headers on the wire, the public POST that suppresses the recipient,
the GET that never does, refused tokens, list-scoped unsubscribes, and the event in the delivery report."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest

from local.lambdas import LocalFunction
from mail_proxy.domain import clock
from tests.conftest import ApiClient, ApiResponse, Stack, load_function_module, message, reset_caches
from tests.fixtures.delivery import DeliveryHarness, record, submit
from tests.fixtures.receiver import ReportReceiver
from tests.fixtures.smtp_server import ScriptedSmtpServer

SAMPLE_EVENT = Path(__file__).resolve().parents[2] / "events" / "api_unsubscribe_one_click.json"
PUBLIC_URL = "http://api.test"
FORM_TYPE = "application/x-www-form-urlencoded"
FORM = b"List-Unsubscribe=One-Click"


@pytest.fixture
def delivery(stack: Stack, smtp: ScriptedSmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeliveryHarness]:
    monkeypatch.setenv("PUBLIC_API_URL", PUBLIC_URL)
    reset_caches()
    clock.advance(60 - (time.time() % 60) + 0.5)  # start of a minute: rate windows cannot roll over
    harness = DeliveryHarness(stack)
    harness.sender_module.dispatcher().sleep = lambda _s: None
    yield harness
    harness.close()


def make_tenant(api: ApiClient, smtp: ScriptedSmtpServer, **fields: object) -> str:
    token = api.create_tenant("acme", **fields)
    api.create_account(token, host="127.0.0.1", port=smtp.port, tls="none", user=None, password=None)
    return token


@pytest.fixture
def acme(api: ApiClient, smtp: ScriptedSmtpServer) -> str:
    return make_tenant(api, smtp)


def send(api: ApiClient, delivery: DeliveryHarness, token: str, *messages: dict[str, object]) -> None:
    answer = submit(api, token, *messages)
    assert answer["queued"] == len(messages), answer
    delivery.drain()


def delivered(smtp: ScriptedSmtpServer, count: int) -> list[Message]:
    return [message_from_bytes(m.data) for m in smtp.wait_for_messages(count)]


def link_path(mail: Message) -> str:
    """The path of the HTTPS (here HTTP) link of a delivered message's List-Unsubscribe header."""
    header = str(mail["List-Unsubscribe"]).replace("\r\n", "")
    found = re.search(re.escape(PUBLIC_URL) + r"(/unsubscribe/[A-Za-z0-9_.-]+)>", header)
    assert found, mail["List-Unsubscribe"]
    return found.group(1)


def post_form(api: ApiClient, path: str, body: bytes = FORM, content_type: str = FORM_TYPE) -> ApiResponse:
    """A POST as a mailbox provider (or the page's button) makes it: a form body, no token."""
    response = api.gateway.handle("POST", path, [("content-type", content_type)], body)
    text = response.body.decode("utf-8") if isinstance(response.body, bytes) else str(response.body)
    return ApiResponse(response.status, {k.lower(): v for k, v in dict(response.headers).items()}, text)


def suppressions(api: ApiClient, token: str) -> list[dict[str, object]]:
    resp = api.get("/suppressions", token=token)
    assert resp.status == 200, resp.text
    return list(resp.json["suppressions"])


def test_the_headers_reach_the_smtp_server(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, unsubscribe={"mailto": "leave@acme.example"})
    send(api, delivery, token, message("m1", to=["reader@example.org"], unsubscribe=True), message("m2"))
    by_id = {str(m["X-Mail-Proxy-ID"]): m for m in delivered(smtp, 2)}
    with_link, without = by_id["acme/m1"], by_id["acme/m2"]
    header = str(with_link["List-Unsubscribe"]).replace("\r\n", "")  # unfolded
    assert header.startswith(f"<{PUBLIC_URL}/unsubscribe/")
    assert header.endswith(", <mailto:leave@acme.example?subject=unsubscribe>")
    assert with_link["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert without["List-Unsubscribe"] is None and without["List-Unsubscribe-Post"] is None


def test_the_one_click_post_suppresses_the_recipient_and_a_later_message_ends_suppressed(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    send(api, delivery, acme, message("m1", to=["Reader@Example.org"], unsubscribe=True))
    path = link_path(delivered(smtp, 1)[0])
    resp = post_form(api, path)
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
    assert "Unsubscribed" in resp.text and resp.headers["cache-control"] == "no-store"
    [entry] = suppressions(api, acme)
    assert (entry["address"], entry["source"], entry["message_id"], entry["lists"]) == \
        ("reader@example.org", "unsubscribe", "m1", None)
    send(api, delivery, acme, message("m2", to=["reader@example.org"]))
    rec = record(api, acme, "m2")
    assert (rec["status"], rec["error"], rec["attempts"]) == ("error", "suppressed", 0)
    assert len(smtp.messages) == 1


def test_the_get_shows_a_confirmation_page_and_suppresses_nothing(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    send(api, delivery, acme, message("m1", unsubscribe=True))
    path = link_path(delivered(smtp, 1)[0])
    for _scan in range(3):  # a link scanner, then the person
        page = api.get(path)
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
        assert "rcpt@example.org" in page.text
    assert suppressions(api, acme) == []
    assert [e["event_type"] for e in record(api, acme, "m1")["history"]] == ["sent"]
    send(api, delivery, acme, message("m2"))
    assert record(api, acme, "m2")["status"] == "sent"


def test_a_tampered_token_is_refused_and_changes_nothing(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    send(api, delivery, acme, message("m1", unsubscribe=True))
    path = link_path(delivered(smtp, 1)[0])
    body, _, mac = path.rpartition("/")[2].partition(".")
    forged = [
        f"/unsubscribe/{body[:-2]}{'AA' if body[-2:] != 'AA' else 'BB'}.{mac}",  # another recipient, same mac
        f"/unsubscribe/{body}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        f"/unsubscribe/{body}",
        "/unsubscribe/%C3%A9.x",
    ]
    for path in forged:
        for method in ("GET", "POST"):
            resp = post_form(api, path) if method == "POST" else api.get(path)
            assert resp.status == 404, (method, path, resp.text)
            assert resp.headers["content-type"].startswith("text/html") and "not valid" in resp.text
    assert suppressions(api, acme) == []


def test_an_expired_link_is_refused(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    send(api, delivery, acme, message("m1", unsubscribe=True))
    path = link_path(delivered(smtp, 1)[0])
    clock.advance(366 * 86400)
    resp = post_form(api, path)
    assert resp.status == 410 and "expired" in resp.text
    assert suppressions(api, acme) == []


@pytest.mark.parametrize("body", [b"", b"List-Unsubscribe=Yes", b"unsubscribe=One-Click"])
def test_a_post_without_the_one_click_field_unsubscribes_nobody(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, body: bytes) -> None:
    send(api, delivery, acme, message("m1", unsubscribe=True))
    resp = post_form(api, link_path(delivered(smtp, 1)[0]), body)
    assert resp.status == 400 and resp.headers["content-type"].startswith("text/html")
    assert suppressions(api, acme) == []


def test_a_multipart_one_click_post_unsubscribes(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    send(api, delivery, acme, message("m1", unsubscribe=True))
    body = (b"--xyz\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n"
            b"--xyz--\r\n")
    resp = post_form(api, link_path(delivered(smtp, 1)[0]), body, "multipart/form-data; boundary=xyz")
    assert resp.status == 200, resp.text
    assert [e["address"] for e in suppressions(api, acme)] == ["rcpt@example.org"]


def test_the_unsubscribe_event_is_reported_once_after_the_sent_event(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness, receiver: ReportReceiver) -> None:
    token = make_tenant(api, smtp, client_base_url=receiver.url)
    send(api, delivery, token, message("m1", to=["reader@example.org"], unsubscribe=True))
    delivery.report()
    path = link_path(delivered(smtp, 1)[0])
    for _click in range(2):  # a provider retrying the POST, or a second click
        assert post_form(api, path).status == 200
    delivery.report()
    items = [i for i in receiver.reports() if i["id"] == "m1"]
    assert [i["event"] for i in items] == ["sent", "unsubscribe"]
    assert items[1]["details"] == {"address": "reader@example.org"} and isinstance(items[1]["event_ts"], int)
    rec = record(api, token, "m1")
    assert rec["status"] == "sent" and [e["event_type"] for e in rec["history"]] == ["sent", "unsubscribe"]


def test_a_list_scoped_unsubscribe_stops_only_that_batch(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, unsubscribe={"default": True, "per_batch": True})
    send(api, delivery, token, message("m1", batch_code="news"))
    assert post_form(api, link_path(delivered(smtp, 1)[0])).status == 200
    [entry] = suppressions(api, token)
    assert entry["lists"] == ["news"]
    send(api, delivery, token, message("m2", batch_code="news"), message("m3", batch_code="invoices"),
         message("m4"))
    assert (record(api, token, "m2")["status"], record(api, token, "m2")["error"]) == ("error", "suppressed")
    assert record(api, token, "m3")["status"] == "sent" and record(api, token, "m4")["status"] == "sent"
    # a second list adds to the entry; a manual entry for every message replaces it
    send(api, delivery, token, message("m5", batch_code="offers"))
    [offers] = [m for m in delivered(smtp, 4) if m["X-Mail-Proxy-ID"] == "acme/m5"]
    assert post_form(api, link_path(offers)).status == 200
    assert suppressions(api, token)[0]["lists"] == ["news", "offers"]
    assert api.post("/suppressions", token=token, body={"address": "rcpt@example.org"}).status == 201
    send(api, delivery, token, message("m6", batch_code="invoices"))
    assert record(api, token, "m6")["error"] == "suppressed"


def test_the_tenant_default_applies_to_single_recipient_messages_that_do_not_opt_out(
        api: ApiClient, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    token = make_tenant(api, smtp, unsubscribe={"default": True})
    assert api.get("/tenant/acme", token=token).json["unsubscribe"] == {"default": True, "per_batch": False,
                                                                       "mailto": None}
    send(api, delivery, token, message("m1"), message("m2", unsubscribe=False),
         message("m3", to=["a@example.org", "b@example.org"]),
         message("m4", headers={"List-Unsubscribe": "<https://acme.example/u/1>"}))
    by_id = {str(m["X-Mail-Proxy-ID"]): m for m in delivered(smtp, 4)}
    assert str(by_id["acme/m1"]["List-Unsubscribe"]).startswith(f"<{PUBLIC_URL}/unsubscribe/")
    assert by_id["acme/m2"]["List-Unsubscribe"] is None and by_id["acme/m3"]["List-Unsubscribe"] is None
    assert by_id["acme/m4"]["List-Unsubscribe"] == "<https://acme.example/u/1>"
    assert by_id["acme/m4"]["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(("fields", "reason"), [
    ({"to": ["a@example.org", "b@example.org"]}, "exactly one recipient"),
    ({"cc": ["c@example.org"]}, "exactly one recipient"),
    ({"headers": {"List-Unsubscribe": "<https://x.example/u>"}}, "do not give it in headers"),
])
def test_a_message_asking_for_a_link_it_cannot_carry_is_rejected(
        api: ApiClient, acme: str, fields: dict[str, object], reason: str) -> None:
    answer = submit(api, acme, message("m1", unsubscribe=True, **fields))
    assert answer["queued"] == 0 and reason in answer["rejected"][0]["reason"]


def test_the_routes_need_no_token_and_are_documented(api: ApiClient, acme: str) -> None:
    document = api.get("/openapi.json").json
    operations = document["paths"]["/unsubscribe/{token}"]
    assert set(operations) == {"get", "post"}
    assert {"200", "404", "410"} <= set(operations["post"]["responses"]) and "400" in operations["post"]["responses"]
    assert operations["get"]["tags"] == ["Unsubscribe"]


def test_the_sample_event_a_base64_form_post_as_api_gateway_sends_it_unsubscribes_with_a_real_token(
        api: ApiClient, acme: str, smtp: ScriptedSmtpServer, delivery: DeliveryHarness) -> None:
    api_function = LocalFunction("local-ApiFunction", load_function_module("api").lambda_handler, timeout_seconds=30)
    sample = json.loads(SAMPLE_EVENT.read_text())
    assert sample["isBase64Encoded"] is True
    forged = api_function.invoke(sample)
    assert forged["statusCode"] == 404 and "not valid" in forged["body"]
    send(api, delivery, acme, message("m1", unsubscribe=True))
    path = link_path(delivered(smtp, 1)[0])
    sample.update(rawPath=path, pathParameters={"token": path.rpartition("/")[2]})
    sample["requestContext"]["http"]["path"] = path
    answer = api_function.invoke(sample)
    assert answer["statusCode"] == 200, answer
    assert [e["address"] for e in suppressions(api, acme)] == ["rcpt@example.org"]
