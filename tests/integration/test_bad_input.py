"""Bad input: a 4xx with a clear detail, never a 500, and nothing half-written.

A bad *request* (malformed JSON, wrong types, unknown fields, oversize, bad ids, too many messages) is refused
whole: 4xx, ``{"detail": ...}``, and the table is exactly as before. A bad *message* inside a good
``add-messages`` request is, per the contract, rejected on its own with a reason while the others are
queued; it is never stored as pending nor queued (with a usable id it is stored as ``error``).

The module shares one moto stack and one tenant (see ``conftest.shared_stack``): every request
here is refused or touches only its own message ids, which the table checks confirm.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from mail_proxy.adapters.dynamodb.keys import MESSAGE_INFIX, STATE_SK, log_pk, message_pk
from mail_proxy.adapters.dynamodb.table import item_key
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message, reset_caches

SMALL_BODY_LIMIT = 2000
_serial = itertools.count(1)


@dataclass
class Tenant:
    api: ApiClient
    stack: Stack
    token: str

    def snapshot(self) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in self.stack.raw_items()
                      if i["pk"]["S"] != log_pk("acme"))


@pytest.fixture(scope="module")
def tenant(shared_stack: tuple[Stack, ApiClient]) -> Tenant:
    stack, api = shared_stack
    token = api.create_tenant("acme")
    api.create_account(token)
    return Tenant(api, stack, token)


@pytest.fixture
def small_body_limit() -> Iterator[int]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAX_BODY_BYTES", str(SMALL_BODY_LIMIT))
        reset_caches()
        yield SMALL_BODY_LIMIT
    reset_caches()


def assert_refused(resp: Any, status: int, says: str) -> None:
    assert resp.status == status, resp.text
    assert isinstance(resp.json, dict) and set(resp.json) == {"detail"}, resp.text
    assert says.lower() in json.dumps(resp.json["detail"]).lower(), resp.text


# ------------------------------------------------------------------------------------------ whole requests


@dataclass(frozen=True)
class Bad:
    name: str
    method: str
    path: str
    says: str
    body: Any = None
    raw_body: bytes | None = None
    admin: bool = False
    status: int = 422


def account(**fields: Any) -> dict[str, Any]:
    return {"id": "smtp9", "host": "smtp.example.com", "port": 587, "user": "u@example.com", **fields}


MALFORMED = b'{"messages": [{"id": "m1",'
BAD_REQUESTS = [
    *(Bad(f"malformed JSON {m} {p}", m, p, "not valid JSON", raw_body=MALFORMED, admin=a)
      for m, p, a in (("POST", "/tenant", True), ("PUT", "/tenant/acme", False), ("POST", "/account", False),
                      ("POST", "/commands/add-messages", False), ("POST", "/commands/delete-messages", False),
                      ("POST", "/commands/cleanup-messages", False))),
    *(Bad(f"body is a JSON array {p}", m, p, "must be a JSON object", body=[b], admin=a)
      for m, p, b, a in (("POST", "/tenant", {"tenant_id": "x"}, True), ("PUT", "/tenant/acme", {"name": "x"}, False),
                         ("POST", "/commands/add-messages", {"messages": []}, False))),
    Bad("body is a JSON string", "POST", "/commands/cleanup-messages", "must be a JSON object", body="{}"),
    Bad("body is empty", "POST", "/tenant", "required", raw_body=b"", admin=True),
    Bad("port as text", "POST", "/account", "valid integer", body=account(port="abc")),
    Bad("port 25", "POST", "/account", "port 25 is blocked", body=account(port=25)),
    Bad("port 0", "POST", "/account", "port", body=account(port=0)),
    Bad("port 65536", "POST", "/account", "port", body=account(port=65536)),
    Bad("tls unknown", "POST", "/account", "tls", body=account(tls="maybe")),
    Bad("limit negative", "POST", "/account", "limit_per_minute", body=account(limit_per_minute=-1)),
    Bad("messages not a list", "POST", "/commands/add-messages", "valid list", body={"messages": "m1"}),
    Bad("messages missing", "POST", "/commands/add-messages", "messages", body={}),
    Bad("default priority unknown", "POST", "/commands/add-messages", "default_priority",
        body={"messages": [message("dp1")], "default_priority": "urgent"}),
    Bad("unknown field on add-messages", "POST", "/commands/add-messages", "unknown field",
        body={"messages": [], "priority": 1}),
    Bad("unknown field on tenant", "POST", "/tenant", "unknown field", body={"tenant_id": "t1", "colour": "red"},
        admin=True),
    Bad("unknown field on tenant update", "PUT", "/tenant/acme", "unknown field", body={"colour": "red"}),
    Bad("unknown field in client_auth", "PUT", "/tenant/acme", "unknown field",
        body={"client_auth": {"method": "bearer", "token": "t", "scheme": "x"}}),
    Bad("unknown field on account", "POST", "/account", "unknown field", body=account(passwd="x")),
    Bad("tenant active not a boolean", "POST", "/tenant", "active", body={"tenant_id": "t1", "active": "maybe"},
        admin=True),
    Bad("tenant rate limit negative", "PUT", "/tenant/acme", "per_minute", body={"rate_limits": {"per_minute": -5}}),
    Bad("CR/LF in account user", "POST", "/account", "line break", body=account(user="u\r\nAUTH PLAIN x")),
    Bad("CR/LF in account password", "POST", "/account", "line break", body=account(password="p\r\nQUIT")),
    Bad("CR/LF in account host", "POST", "/account", "host", body=account(host="smtp.example.com\r\n")),
    Bad("LF after account host", "POST", "/account", "host", body=account(host="smtp.example.com\n")),
    Bad("CR/LF in tenant name", "PUT", "/tenant/acme", "line break", body={"name": "Acme\r\nX-Evil: 1"}),
    Bad("CR/LF in client_auth token", "PUT", "/tenant/acme", "line break",
        body={"client_auth": {"method": "bearer", "token": "t\r\nX-Evil: 1"}}),
    Bad("client_base_url not http", "PUT", "/tenant/acme", "http(s) url", body={"client_base_url": "ftp://x.org"}),
    Bad("client_base_url with a space", "PUT", "/tenant/acme", "http(s) url",
        body={"client_base_url": "https://app.example.com/a b"}),
    Bad("tenant id 129 characters", "POST", "/tenant", "tenant_id", body={"tenant_id": "t" * 129}, admin=True),
    Bad("tenant id 65 characters", "POST", "/tenant", "tenant_id", body={"tenant_id": "t" * 65}, admin=True),
    Bad("tenant id with a key separator", "POST", "/tenant", "tenant_id", body={"tenant_id": "a#MSG#b"},
        admin=True),
    Bad("tenant token too short", "POST", "/tenant", "token", body={"tenant_id": "t1", "token": "short"},
        admin=True),
    Bad("account id 129 characters", "POST", "/account", "id", body=account(id="a" * 129)),
    Bad("1,001 messages", "POST", "/commands/add-messages", "at most 1000",
        body={"messages": [message(f"many{i}") for i in range(1001)]}),
    Bad("delete ids not a list", "POST", "/commands/delete-messages", "valid list", body={"ids": "m1"}),
    Bad("delete 1,001 ids", "POST", "/commands/delete-messages", "ids", body={"ids": ["m"] * 1001}),
    Bad("delete id 129 characters", "POST", "/commands/delete-messages", "ids", body={"ids": ["x" * 129]}),
    Bad("cleanup negative age", "POST", "/commands/cleanup-messages", "older_than_seconds",
        body={"older_than_seconds": -1}),
    Bad("cleanup age as text", "POST", "/commands/cleanup-messages", "older_than_seconds",
        body={"older_than_seconds": "a week"}),
    Bad("list limit 0", "GET", "/messages?limit=0", "limit"),
    Bad("list limit 1001", "GET", "/messages?limit=1001", "limit"),
    Bad("list limit as text", "GET", "/messages?limit=ten", "limit"),
    Bad("list status unknown", "GET", "/messages?status=lost", "status"),
    Bad("list active_only not a boolean", "GET", "/messages?active_only=perhaps", "active_only"),
    Bad("list cursor garbage", "GET", "/messages?cursor=%25%25%25", "cursor"),
    Bad("command-log since negative", "GET", "/command-log?since_ts=-1", "since_ts", admin=True),
    Bad("command-log limit as text", "GET", "/command-log?limit=all", "limit", admin=True),
    Bad("message id 129 characters in the path", "GET", "/messages/" + "x" * 129, "message_id"),
    Bad("account id 129 characters in the path", "GET", "/account/" + "x" * 129, "account_id"),
    Bad("tenant id 65 characters in the path", "GET", "/tenant/" + "t" * 65, "tenant_id", admin=True),
    Bad("batch code 65 characters", "POST", "/commands/suspend?batch_code=" + "b" * 65, "batch_code"),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b.name for b in BAD_REQUESTS])
def test_bad_request_is_a_4xx_with_a_clear_detail_and_changes_nothing(tenant: Tenant, bad: Bad) -> None:
    before = tenant.snapshot()
    resp = tenant.api.request(bad.method, bad.path, token=ADMIN_TOKEN if bad.admin else tenant.token,
                              body=bad.body, raw_body=bad.raw_body)
    assert_refused(resp, bad.status, bad.says)
    assert tenant.snapshot() == before


def test_body_that_is_not_utf8_is_422_not_a_500(tenant: Tenant) -> None:
    before = tenant.snapshot()
    resp = tenant.api.post("/tenant", token=ADMIN_TOKEN, raw_body=b'\xff\xfe{"tenant_id": "t1"}')
    assert_refused(resp, 422, "not UTF-8")
    assert tenant.snapshot() == before


def test_body_that_is_not_json_is_415(tenant: Tenant) -> None:
    before = tenant.snapshot()
    got = tenant.api.gateway.handle("POST", "/tenant", [("content-type", "text/plain"),
                                                         ("x-api-token", ADMIN_TOKEN)], b'{"tenant_id": "t1"}')
    assert got.status == 415
    assert json.loads(got.body) == {"detail": "request body must be JSON (Content-Type: application/json)"}
    assert tenant.snapshot() == before


def test_validation_detail_names_the_field_and_never_echoes_the_value(tenant: Tenant) -> None:
    resp = tenant.api.post("/account", token=tenant.token,
                           body=account(port="not-a-port-secret-ish", password=["pw-in-a-list-77"]))
    assert resp.status == 422
    assert {tuple(d["loc"]) for d in resp.json["detail"]} == {("port",), ("password",)}
    assert "not-a-port-secret-ish" not in resp.text and "pw-in-a-list-77" not in resp.text


# ------------------------------------------------------------------------------------------ oversize


def test_body_over_max_body_bytes_is_413(tenant: Tenant, small_body_limit: int) -> None:
    before = tenant.snapshot()
    resp = tenant.api.post("/commands/add-messages", token=tenant.token,
                           body={"messages": [message("big", body="x" * small_body_limit)]})
    assert_refused(resp, 413, f"larger than {small_body_limit} bytes")
    assert tenant.snapshot() == before


def test_body_over_the_limit_in_bytes_but_not_in_characters_is_413(tenant: Tenant, small_body_limit: int) -> None:
    raw = json.dumps({"messages": [message("wide", body="é" * (small_body_limit * 2 // 3))]},
                     ensure_ascii=False).encode()
    assert len(raw.decode()) < small_body_limit < len(raw)
    before = tenant.snapshot()
    assert_refused(tenant.api.post("/commands/add-messages", token=tenant.token, raw_body=raw), 413, "larger")
    assert tenant.snapshot() == before


def test_oversize_tenant_body_is_413_not_a_validation_error(tenant: Tenant, small_body_limit: int) -> None:
    resp = tenant.api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "huge", "name": "n" * small_body_limit})
    assert_refused(resp, 413, "larger")
    assert tenant.api.get("/tenant/huge", token=ADMIN_TOKEN).status == 404


def test_body_within_max_body_bytes_is_accepted(tenant: Tenant, small_body_limit: int) -> None:
    resp = tenant.api.post("/commands/add-messages", token=tenant.token, body={"messages": [message("fits")]})
    assert resp.status == 200 and resp.json["queued"] == 1


# ------------------------------------------------------------------------------------------ bad messages


def state(tenant: Tenant, message_id: str) -> dict[str, Any] | None:
    resp = boto3.client("dynamodb").get_item(
        TableName=tenant.stack.table_name,
        Key=item_key(message_pk("acme", message_id), STATE_SK))
    return resp.get("Item")


def add_with_a_good_one(tenant: Tenant, bad: dict[str, Any]) -> tuple[Any, str]:
    good_id = f"good{next(_serial)}"
    resp = tenant.api.post("/commands/add-messages", token=tenant.token, body={"messages": [bad, message(good_id)]})
    assert resp.status == 200, resp.text
    assert resp.json["queued"] == 1 and len(resp.json["rejected"]) == 1, resp.text
    good = state(tenant, good_id)
    assert good is not None and good["status"]["S"] == "pending"
    return resp.json["rejected"][0], good_id


def crlf(value: str) -> str:
    return value.replace("@", "@x.example\r\nBcc: victim@", 1)


BAD_MESSAGES: list[tuple[str, Callable[[str], dict[str, Any]], str]] = [
    ("unknown field", lambda i: message(i, priorty="high"), "priorty: unknown field"),
    ("CR/LF in the subject", lambda i: message(i, subject="Hi\r\nBcc: victim@example.net"),
     "subject contains a line break"),
    ("LF in the subject", lambda i: message(i, subject="Hi\nBcc: victim@example.net"), "line break"),
    ("CR/LF in a custom header value", lambda i: message(i, headers={"X-Tag": "a\r\nBcc: victim@example.net"}),
     "header X-Tag contains a line break"),
    ("CR/LF in a custom header name", lambda i: message(i, headers={"X-Tag\r\nBcc": "v"}),
     "not a valid header field name"),
    ("header the proxy sets", lambda i: message(i, headers={"Bcc": "victim@example.net"}), "set by the proxy"),
    ("CR/LF in from", lambda i: message(i, **{"from": crlf("sender@example.com")}), "from contains a line break"),
    ("CR/LF in to", lambda i: message(i, to=[crlf("rcpt@example.org")]), "to contains a line break"),
    ("CR/LF in cc", lambda i: message(i, cc=[crlf("cc@example.org")]), "cc contains a line break"),
    ("CR/LF in bcc", lambda i: message(i, bcc=crlf("bcc@example.org")), "bcc contains a line break"),
    ("CR/LF in reply_to", lambda i: message(i, reply_to=crlf("r@example.org")), "reply_to contains a line break"),
    ("CR/LF in return_path", lambda i: message(i, return_path=crlf("b@example.org")),
     "return_path contains a line break"),
    ("CR/LF in message_id", lambda i: message(i, message_id="<a@b>\r\nBcc: v@example.net"), "line break"),
    ("recipient without @", lambda i: message(i, to=["rcpt.example.org"]), "not an e-mail address"),
    ("recipient without a domain dot", lambda i: message(i, to=["rcpt@localhost"]), "not a valid e-mail address"),
    ("recipient with a quoted local part", lambda i: message(i, to=['"rc pt"@example.org']),
     "not a valid e-mail address"),
    ("recipient at an address literal", lambda i: message(i, to=["rcpt@[127.0.0.1]"]), "not a valid e-mail address"),
    ("sender with two @", lambda i: message(i, **{"from": "a@@example.com"}), "from"),
    ("cc not an address", lambda i: message(i, cc="just text"), "cc"),
    ("no recipient", lambda i: message(i, to=[]), "at least one recipient"),
    ("empty subject", lambda i: message(i, subject=""), "subject"),
    ("missing subject", lambda i: {k: v for k, v in message(i).items() if k != "subject"},
     "subject: field required"),
    ("invalid priority label", lambda i: message(i, priority="urgent"), "priority 'urgent'"),
    ("priority out of range", lambda i: message(i, priority=7), "priority 7"),
    ("deferred_ts as a string", lambda i: message(i, deferred_ts="tomorrow"), "deferred_ts must be unix seconds"),
    ("deferred_ts negative", lambda i: message(i, deferred_ts=-5), "deferred_ts"),
    ("content_type unknown", lambda i: message(i, content_type="rtf"), "content_type"),
    ("batch_code 65 characters", lambda i: message(i, batch_code="b" * 65), "batch_code"),
    ("attachment fetch mode unknown", lambda i: message(i, attachments=[{"filename": "a.pdf",
                                                                          "storage_path": "x",
                                                                          "fetch_mode": "ftp"}]),
     "attachments"),
    ("headers not an object", lambda i: message(i, headers=["X-Tag: v"]), "headers"),
    ("body not a string", lambda i: message(i, body={"text": "hi"}), "body"),
]


@pytest.mark.parametrize(("make", "reason"), [(m, r) for _, m, r in BAD_MESSAGES], ids=[n for n, _, _ in BAD_MESSAGES])
def test_bad_message_is_rejected_with_its_reason_while_the_others_are_queued(
        tenant: Tenant, make: Callable[[str], dict[str, Any]], reason: str) -> None:
    bad_id = f"bad{next(_serial)}"
    rejection, _good = add_with_a_good_one(tenant, make(bad_id))
    assert rejection["id"] == bad_id
    assert reason in rejection["reason"]
    stored = state(tenant, bad_id)
    assert stored is not None and stored["status"]["S"] == "error"
    assert reason in stored["error"]["S"]
    assert "due_pk" not in stored


@pytest.mark.parametrize("bad_id", ["x" * 129, "has space", "new\nline", "", 17, None],
                         ids=["129-chars", "space", "newline", "empty", "number", "missing"])
def test_message_with_an_unusable_id_is_rejected_and_not_stored(tenant: Tenant, bad_id: Any) -> None:
    raw = message("placeholder")
    if bad_id is None:
        del raw["id"]
    else:
        raw["id"] = bad_id
    before = [i for i in tenant.snapshot() if MESSAGE_INFIX in i]
    rejection, good_id = add_with_a_good_one(tenant, raw)
    assert "id" in rejection["reason"]
    after = [i for i in tenant.snapshot() if MESSAGE_INFIX in i and message_pk("acme", good_id) not in i]
    assert after == before


def test_message_that_is_not_an_object_is_rejected(tenant: Tenant) -> None:
    resp = tenant.api.post("/commands/add-messages", token=tenant.token,
                           body={"messages": ["not a message", message(f"good{next(_serial)}")]})
    assert resp.json["queued"] == 1
    assert resp.json["rejected"] == [{"id": None, "reason": "each message must be a JSON object"}]


WRONG_TYPE_FIELDS = ["id", "tenant_id", "account_id", "from", "to", "cc", "bcc", "reply_to", "return_path",
                     "subject", "body", "content_type", "html_body", "headers", "message_id", "attachments",
                     "priority", "deferred_ts", "batch_code"]


@pytest.mark.parametrize("field", WRONG_TYPE_FIELDS)
def test_wrong_type_in_any_message_field_is_a_rejection_not_a_500(tenant: Tenant, field: str) -> None:
    raw = message(f"typed{next(_serial)}")
    raw[field] = [{"nested": True}] if field == "headers" else {"nested": True}
    resp = tenant.api.post("/commands/add-messages", token=tenant.token, body={"messages": [raw]})
    if field == "tenant_id":
        assert resp.status == 403, resp.text  # a tenant_id that is not the caller's tenant
        return
    assert resp.status == 200, resp.text
    assert resp.json["queued"] == 0 and len(resp.json["rejected"]) == 1


TENANT_FIELDS = ["tenant_id", "name", "token", "client_base_url", "client_sync_path", "client_attachment_path",
                 "client_auth", "rate_limits", "active"]
ACCOUNT_FIELDS = ["id", "tenant_id", "host", "port", "user", "password", "tls", "limit_per_minute",
                  "limit_per_hour", "limit_per_day", "limit_behavior", "use_tls", "batch_size"]


@pytest.mark.parametrize("field", TENANT_FIELDS)
def test_wrong_type_in_any_tenant_field_is_422(tenant: Tenant, field: str) -> None:
    tenant_id = f"typed{next(_serial)}"
    resp = tenant.api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": tenant_id, field: [["nested"]]})
    assert_refused(resp, 422, field)
    assert tenant.api.get(f"/tenant/{tenant_id}", token=ADMIN_TOKEN).status == 404


@pytest.mark.parametrize("field", ACCOUNT_FIELDS)
def test_wrong_type_in_any_account_field_is_422(tenant: Tenant, field: str) -> None:
    before = tenant.snapshot()
    resp = tenant.api.post("/account", token=tenant.token, body={**account(), field: [["nested"]]})
    assert_refused(resp, 422, field)
    assert tenant.snapshot() == before
