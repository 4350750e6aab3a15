"""The local HTTP API answers as API Gateway HTTP API with a Lambda REQUEST authorizer does."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from local.gateway import MAX_PAYLOAD_BYTES, HttpApiGateway

TOKEN = "good-token"


@dataclass
class Recorder:
    """Dummy authorizer and api handlers that record their events."""

    authorizer_events: list[dict[str, Any]] = field(default_factory=list)
    api_events: list[dict[str, Any]] = field(default_factory=list)
    decide: Callable[[str], Any] = lambda token: {"isAuthorized": token == TOKEN, "context": {"role": "admin"}}
    answer: Callable[[dict[str, Any]], Any] = lambda event: {"statusCode": 200, "body": "{}"}

    def authorizer(self, event: dict[str, Any], context: Any) -> Any:
        self.authorizer_events.append(event)
        return self.decide(event["identitySource"][0])

    def api(self, event: dict[str, Any], context: Any) -> Any:
        self.api_events.append(event)
        return self.answer(event)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(recorder: Recorder) -> Iterator[HttpApiGateway]:
    server = HttpApiGateway(recorder.api, recorder.authorizer, port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def call(
    gateway: HttpApiGateway,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_missing_token_is_401_without_calling_the_authorizer(gateway: HttpApiGateway, recorder: Recorder) -> None:
    answer = call(gateway, "GET", "/tenants")
    assert answer.status == 401
    assert answer.json() == {"message": "Unauthorized"}
    assert recorder.authorizer_events == [] and recorder.api_events == []


def test_empty_token_is_401_without_calling_the_authorizer(gateway: HttpApiGateway, recorder: Recorder) -> None:
    assert call(gateway, "GET", "/tenants", headers={"X-API-Token": ""}).status == 401
    assert recorder.authorizer_events == []


def test_authorizer_denial_is_403(gateway: HttpApiGateway, recorder: Recorder) -> None:
    answer = call(gateway, "GET", "/tenants", headers={"X-API-Token": "wrong"})
    assert answer.status == 403
    assert answer.json() == {"message": "Forbidden"}
    assert recorder.api_events == []


def test_authorizer_raising_unauthorized_is_401(gateway: HttpApiGateway, recorder: Recorder) -> None:
    def refuse(token: str) -> Any:
        raise Exception("Unauthorized")  # the Lambda authorizer convention for a 401

    recorder.decide = refuse
    answer = call(gateway, "GET", "/tenants", headers={"X-API-Token": "unknown"})
    assert answer.status == 401
    assert answer.json() == {"message": "Unauthorized"}


def test_authorizer_crash_is_500(gateway: HttpApiGateway, recorder: Recorder) -> None:
    def crash(token: str) -> Any:
        raise RuntimeError("table unreachable")

    recorder.decide = crash
    answer = call(gateway, "GET", "/tenants", headers={"X-API-Token": TOKEN})
    assert answer.status == 500
    assert answer.json() == {"message": "Internal Server Error"}
    assert recorder.api_events == []


def test_malformed_authorizer_answer_is_500(gateway: HttpApiGateway, recorder: Recorder) -> None:
    recorder.decide = lambda token: {"isAuthorized": "yes"}
    assert call(gateway, "GET", "/tenants", headers={"X-API-Token": TOKEN}).status == 500


def test_authorizer_gets_a_v2_request_event(gateway: HttpApiGateway, recorder: Recorder) -> None:
    call(gateway, "POST", "/commands/run-now?tenant_id=acme", b"{}", {"X-API-Token": TOKEN})
    (event,) = recorder.authorizer_events
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert event["identitySource"] == [TOKEN]
    assert event["routeKey"] == "ANY /{proxy+}"
    assert event["routeArn"].endswith("/$default/POST/commands/run-now")
    assert event["rawPath"] == "/commands/run-now" and event["rawQueryString"] == "tenant_id=acme"
    assert event["headers"]["x-api-token"] == TOKEN
    assert event["queryStringParameters"] == {"tenant_id": "acme"}
    assert event["pathParameters"] == {"proxy": "commands/run-now"}


def test_authorized_request_reaches_the_api_with_context_query_and_body(
    gateway: HttpApiGateway, recorder: Recorder
) -> None:
    recorder.answer = lambda event: {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-extra": "1"},
        "body": json.dumps({"ok": True}),
    }
    body = json.dumps({"tenant_id": "acme", "name": "Acmé"}).encode()
    answer = call(
        gateway,
        "POST",
        "/tenant?active_only=true&tag=a&tag=b",
        body,
        {"X-API-Token": TOKEN, "Content-Type": "application/json", "X-Multi": "one"},
    )
    assert answer.status == 201 and answer.json() == {"ok": True}
    assert answer.headers["x-extra"] == "1"
    (event,) = recorder.api_events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /{proxy+}"
    assert event["rawPath"] == "/tenant"
    assert event["rawQueryString"] == "active_only=true&tag=a&tag=b"
    assert event["queryStringParameters"] == {"active_only": "true", "tag": "a,b"}
    assert event["pathParameters"] == {"proxy": "tenant"}
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-multi"] == "one"
    assert event["body"] == body.decode() and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["authorizer"] == {"lambda": {"role": "admin"}}
    assert context["http"]["method"] == "POST" and context["http"]["path"] == "/tenant"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "$default" and context["routeKey"] == "ANY /{proxy+}"
    assert context["requestId"] and context["timeEpoch"] > 0


def test_health_bypasses_the_authorizer(gateway: HttpApiGateway, recorder: Recorder) -> None:
    recorder.answer = lambda event: {"statusCode": 200, "body": '{"status":"ok"}'}
    answer = call(gateway, "GET", "/health")
    assert answer.status == 200 and answer.json() == {"status": "ok"}
    assert recorder.authorizer_events == []
    (event,) = recorder.api_events
    assert event["routeKey"] == "GET /health"
    assert "authorizer" not in event["requestContext"]


def test_openapi_bypasses_the_authorizer_but_post_to_it_does_not(gateway: HttpApiGateway, recorder: Recorder) -> None:
    assert call(gateway, "GET", "/openapi.json").status == 200
    assert call(gateway, "POST", "/openapi.json").status == 401
    assert recorder.authorizer_events == []


def test_body_over_10_mb_is_413_without_invoking_anything(gateway: HttpApiGateway, recorder: Recorder) -> None:
    answer = call(gateway, "POST", "/commands/add-messages", b"x" * (MAX_PAYLOAD_BYTES + 1), {"X-API-Token": TOKEN})
    assert answer.status == 413
    assert answer.json() == {"message": "Request Entity Too Large"}
    assert recorder.authorizer_events == [] and recorder.api_events == []


def test_body_of_exactly_10_mb_is_passed_on(gateway: HttpApiGateway, recorder: Recorder) -> None:
    answer = call(gateway, "POST", "/commands/add-messages", b"x" * MAX_PAYLOAD_BYTES, {"X-API-Token": TOKEN})
    assert answer.status == 200
    assert len(recorder.api_events[0]["body"]) == MAX_PAYLOAD_BYTES


def test_chunked_body_without_length_is_refused(gateway: HttpApiGateway, recorder: Recorder) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request("POST", "/tenant", body=iter([b"{}"]), headers={"X-API-Token": TOKEN}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 411
        response.read()
    finally:
        connection.close()
    assert recorder.api_events == []


def test_handler_crash_is_500_json(gateway: HttpApiGateway, recorder: Recorder) -> None:
    def crash(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    recorder.answer = crash
    answer = call(gateway, "GET", "/tenants", headers={"X-API-Token": TOKEN})
    assert answer.status == 500
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"message": "Internal Server Error"}


def test_binary_body_is_base64_encoded_for_the_handler(gateway: HttpApiGateway, recorder: Recorder) -> None:
    payload = bytes(range(256))
    call(gateway, "PUT", "/blob", payload, {"X-API-Token": TOKEN})
    event = recorder.api_events[0]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_base64_response_cookies_and_headers_are_honoured(gateway: HttpApiGateway, recorder: Recorder) -> None:
    recorder.answer = lambda event: {
        "statusCode": 202,
        "headers": {"content-type": "application/octet-stream"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x00\x01binary").decode(),
        "isBase64Encoded": True,
    }
    answer = call(gateway, "GET", "/file", headers={"X-API-Token": TOKEN, "Cookie": "session=x; theme=dark"})
    assert answer.status == 202
    assert answer.body == b"\x00\x01binary"
    assert answer.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert recorder.api_events[0]["cookies"] == ["session=x", "theme=dark"]
    assert "cookie" not in recorder.api_events[0]["headers"]


def test_result_without_status_code_is_sent_as_json_200(gateway: HttpApiGateway, recorder: Recorder) -> None:
    recorder.answer = lambda event: {"ok": True}
    answer = call(gateway, "GET", "/status", headers={"X-API-Token": TOKEN})
    assert answer.status == 200 and answer.json() == {"ok": True}


def test_no_cache_by_default_so_a_revoked_key_fails_at_once(gateway: HttpApiGateway, recorder: Recorder) -> None:
    call(gateway, "GET", "/status", headers={"X-API-Token": TOKEN})
    recorder.decide = lambda token: {"isAuthorized": False}
    assert call(gateway, "GET", "/status", headers={"X-API-Token": TOKEN}).status == 403
    assert len(recorder.authorizer_events) == 2


def test_authorizer_answers_are_cached_per_token_when_configured(recorder: Recorder) -> None:
    server = HttpApiGateway(recorder.api, recorder.authorizer, port=0, auth_cache_seconds=60)
    server.start()
    try:
        for _ in range(3):
            assert call(server, "GET", "/status", headers={"X-API-Token": TOKEN}).status == 200
        assert call(server, "GET", "/status", headers={"X-API-Token": "other"}).status == 403
    finally:
        server.stop()
    assert [event["identitySource"] for event in recorder.authorizer_events] == [[TOKEN], ["other"]]


def test_cache_seconds_come_from_the_environment(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_PROXY_LOCAL_AUTH_CACHE_SECONDS", "5")
    assert HttpApiGateway(recorder.api, recorder.authorizer, port=0).auth_cache_seconds == 5


def test_keep_alive_connection_serves_several_requests(gateway: HttpApiGateway, recorder: Recorder) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        for _ in range(3):
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    finally:
        connection.close()
    assert len(recorder.api_events) == 3


@pytest.mark.parametrize("method", ["PROPFIND", "FOO", "TRACE"])
def test_an_unknown_method_is_a_404_json_like_api_gateway(gateway: HttpApiGateway, recorder: Recorder,
                                                          method: str) -> None:
    answer = call(gateway, method, "/tenants", headers={"X-API-Token": "good"})
    assert answer.status == 404
    assert answer.json() == {"message": "Not Found"}
    assert recorder.authorizer_events == [] and recorder.api_events == []
