"""The client's transport against a scripted server: retries, backoff, Retry-After, idempotency keys and the
exception of each error status."""

from __future__ import annotations

import socket
from email.utils import formatdate

import pytest
from mail_proxy_client import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    MailProxyClient,
    MailProxyError,
    NotFound,
    PayloadTooLarge,
    RetryPolicy,
    ServerError,
    Throttled,
    Unauthorized,
    ValidationFailed,
)
from mail_proxy_client.client import parse_retry_after

from tests.client.fake_api import FakeApi


class Sleeps(list[float]):
    """Records the client's waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(api: FakeApi, sleeps: Sleeps, **options: object) -> MailProxyClient:
    return MailProxyClient(api.url, "the-token", sleep=sleeps, **options)  # type: ignore[arg-type]


def test_a_503_is_retried_and_the_next_answer_returned(fake_api: FakeApi) -> None:
    sleeps = Sleeps()
    fake_api.answer(503, {"detail": "busy"}).answer(200, {"ok": True, "tenants": [{"tenant_id": "a"}]})
    assert client(fake_api, sleeps).list_tenants() == [{"tenant_id": "a"}]
    assert len(fake_api.requests) == 2 and len(sleeps) == 1


def test_creating_a_tenant_is_never_retried(fake_api: FakeApi) -> None:
    sleeps = Sleeps()
    fake_api.answer(503, {"detail": "busy"})
    with pytest.raises(ServerError) as raised:
        client(fake_api, sleeps).create_tenant("acme")
    assert raised.value.status == 503 and len(fake_api.requests) == 1 and sleeps == []


def test_a_new_api_key_is_never_retried(fake_api: FakeApi) -> None:
    fake_api.answer(502, {"detail": "gateway"})
    with pytest.raises(ServerError):
        client(fake_api, Sleeps()).new_api_key("acme")
    assert len(fake_api.requests) == 1


def test_429_waits_for_retry_after_then_retries(fake_api: FakeApi) -> None:
    sleeps = Sleeps()
    fake_api.answer(429, {"detail": "slow down"}, headers={"Retry-After": "3"}).answer(200, {"ok": True})
    client(fake_api, sleeps, retry_policy=RetryPolicy(backoff=0.5)).run_now(tenant_id="acme")
    assert len(sleeps) == 1 and 3 <= sleeps[0] <= 3.5


def test_a_retry_after_beyond_the_limit_raises_throttled_at_once(fake_api: FakeApi) -> None:
    sleeps = Sleeps()
    fake_api.answer(429, {"detail": "quota"}, headers={"Retry-After": "3600"})
    with pytest.raises(Throttled) as raised:
        client(fake_api, sleeps).list_accounts()
    assert raised.value.retry_after == 3600 and sleeps == [] and len(fake_api.requests) == 1


def test_retries_are_bounded_and_back_off_exponentially(fake_api: FakeApi) -> None:
    sleeps = Sleeps()
    for _ in range(4):
        fake_api.answer(500, {"detail": "internal error"})
    policy = RetryPolicy(retries=3, backoff=1.0, max_backoff=100)
    with pytest.raises(ServerError):
        client(fake_api, sleeps, retry_policy=policy).status()
    assert len(fake_api.requests) == 4
    assert [0.5 <= sleeps[0] <= 1, 1 <= sleeps[1] <= 2, 2 <= sleeps[2] <= 4] == [True, True, True]


def test_add_messages_sends_one_idempotency_key_across_retries(fake_api: FakeApi) -> None:
    fake_api.answer(503).answer(500).answer(200, {"ok": True, "queued": 1, "rejected": []})
    result = client(fake_api, Sleeps()).add_messages([{"id": "m1"}], tenant_id="acme")
    keys = {r.headers.get("idempotency-key") for r in fake_api.requests}
    assert result["queued"] == 1 and len(fake_api.requests) == 3
    assert len(keys) == 1 and None not in keys
    assert fake_api.requests[0].path == "/commands/add-messages?tenant_id=acme"
    assert fake_api.requests[0].json() == {"messages": [{"id": "m1"}]}


def test_two_add_messages_calls_get_different_idempotency_keys(fake_api: FakeApi) -> None:
    proxy = client(fake_api, Sleeps())
    fake_api.answer(200, {"ok": True, "queued": 1, "rejected": []}).answer(200, {"ok": True, "queued": 1,
                                                                                "rejected": []})
    proxy.add_messages([{"id": "m1"}])
    proxy.add_messages([{"id": "m1"}])
    assert fake_api.requests[0].headers["idempotency-key"] != fake_api.requests[1].headers["idempotency-key"]


def test_an_idempotency_key_given_by_the_caller_is_sent_as_is(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "queued": 0, "rejected": []})
    client(fake_api, Sleeps()).add_messages([], idempotency_key="order-1001")
    assert fake_api.requests[0].headers["idempotency-key"] == "order-1001"


def test_the_token_travels_in_x_api_token(fake_api: FakeApi) -> None:
    client(fake_api, Sleeps()).status()
    assert fake_api.requests[0].headers["x-api-token"] == "the-token"


def test_a_refused_connection_is_retried_then_raised_as_connection_failed() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    proxy = MailProxyClient(f"http://127.0.0.1:{port}", "t", sleep=sleeps, retries=2)
    with pytest.raises(ConnectionFailed) as raised:
        proxy.health()
    assert raised.value.status is None and len(sleeps) == 2
    assert "cannot reach" in str(raised.value)


@pytest.mark.parametrize(("status", "error"), [
    (401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict), (413, PayloadTooLarge),
    (422, ValidationFailed), (429, Throttled), (500, ServerError), (502, ServerError),
])
def test_each_error_status_raises_its_exception_with_status_and_detail(fake_api: FakeApi, status: int,
                                                                       error: type[MailProxyError]) -> None:
    for _ in range(5):
        fake_api.answer(status, {"detail": f"detail of {status}"})
    with pytest.raises(error) as raised:
        client(fake_api, Sleeps(), retries=0).get_tenant("acme")
    assert isinstance(raised.value, MailProxyError)
    assert raised.value.status == status and raised.value.detail == f"detail of {status}"
    assert str(status) in str(raised.value)


def test_validation_failed_lists_the_fields(fake_api: FakeApi) -> None:
    detail = [{"loc": ["port"], "msg": "must be 1-65535", "type": "less_than_equal"},
              {"loc": ["client_auth", "token"], "msg": "field required", "type": "missing"}]
    fake_api.answer(422, {"detail": detail})
    with pytest.raises(ValidationFailed) as raised:
        client(fake_api, Sleeps()).add_account("a", "smtp.example.com", 99999)
    assert raised.value.fields == {"port": "must be 1-65535", "client_auth.token": "field required"}
    assert raised.value.errors == detail
    assert "port: must be 1-65535" in str(raised.value)


def test_the_gateways_own_401_is_unauthorized(fake_api: FakeApi) -> None:
    fake_api.answer(401, {"message": "Unauthorized"})
    with pytest.raises(Unauthorized) as raised:
        client(fake_api, Sleeps()).list_tenants()
    assert raised.value.detail == "Unauthorized"


def test_an_html_error_page_becomes_a_readable_server_error(fake_api: FakeApi) -> None:
    for _ in range(2):
        fake_api.answer(502, raw=b"<html>Bad Gateway</html>")
    with pytest.raises(ServerError) as raised:
        client(fake_api, Sleeps(), retries=1).health()
    assert "Bad Gateway" in str(raised.value.detail)


def test_iter_messages_follows_the_cursor_to_the_end(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "messages": [{"id": "a"}, {"id": "b"}], "next_cursor": "c1"})
    fake_api.answer(200, {"ok": True, "messages": [{"id": "c"}], "next_cursor": None})
    ids = [m["id"] for m in client(fake_api, Sleeps()).iter_messages(tenant_id="t", page_size=2)]
    assert ids == ["a", "b", "c"]
    assert fake_api.requests[1].path == "/messages?tenant_id=t&limit=2&cursor=c1"


def test_iter_messages_stops_when_a_cursor_comes_back(fake_api: FakeApi) -> None:
    for _ in range(3):
        fake_api.answer(200, {"ok": True, "messages": [{"id": "a"}], "next_cursor": "same"})
    ids = [m["id"] for m in client(fake_api, Sleeps()).iter_messages()]
    assert ids == ["a", "a"] and len(fake_api.requests) == 2


def test_ids_are_escaped_in_paths(fake_api: FakeApi) -> None:
    fake_api.answer(200, {"id": "a/b"})
    client(fake_api, Sleeps()).get_message("a/b?c", tenant_id="t")
    assert fake_api.requests[0].path == "/messages/a%2Fb%3Fc?tenant_id=t"


def test_retry_after_may_be_seconds_or_an_http_date() -> None:
    assert parse_retry_after("7") == 7
    in_a_minute = parse_retry_after(formatdate(timeval=__import__("time").time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 <= in_a_minute <= 61
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_a_base_url_without_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        MailProxyClient("127.0.0.1:8000", "t")


def test_add_messages_without_a_tenant_for_the_admin_token_raises_instead_of_answering_ok(fake_api: FakeApi) -> None:
    reason = "tenant_id is required with the admin token"
    fake_api.answer(200, {"ok": True, "queued": 0, "rejected": [{"id": "a", "reason": reason},
                                                                {"id": "b", "reason": reason}]})
    with pytest.raises(ValidationFailed, match="tenant_id is required with the admin token: pass add_messages"):
        client(fake_api, Sleeps()).add_messages([{"id": "a"}, {"id": "b"}])


def test_add_messages_with_a_tenant_returns_its_rejections(fake_api: FakeApi) -> None:
    answer = {"ok": True, "queued": 0, "rejected": [{"id": "a", "reason": "to: 'x' is not an e-mail address"}]}
    fake_api.answer(200, answer)
    assert client(fake_api, Sleeps()).add_messages([{"id": "a"}], tenant_id="acme") == answer


def test_each_retry_is_reported_before_its_wait(fake_api: FakeApi) -> None:
    seen: list[tuple[int | None, int]] = []
    fake_api.answer(503, {"detail": "busy"}).answer(429, {"detail": "slow"}).answer(200, {"status": "ok"})
    api = MailProxyClient(fake_api.url, "t", sleep=Sleeps(),
                          on_retry=lambda error, delay, number: seen.append((error.status, number)))
    assert api.health() == {"status": "ok"} and seen == [(503, 1), (429, 2)]
