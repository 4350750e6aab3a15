"""What /openapi.json promises a client generator: summaries, the token scheme, the message model, every status
with its error shape; and the answers behind those promises (405 with Allow, 415, null bodies, no true for 1)."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import load_template
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack

PUBLIC = {(route.method, route.path) for route in load_template().http_routes("ApiFunction")
          if not route.authorized and route.path != "/metrics"}
"""Routes served without the authorizer (template.yaml's ``Auth: {Authorizer: NONE}``) that need no token;
``/metrics`` skips the authorizer only so an operator can make it public: the function asks for the token."""
ERROR_SCHEMAS = {"#/components/schemas/ErrorDetail", "#/components/schemas/ErrorAnswer",
                 "#/components/schemas/GatewayError"}


@pytest.fixture(scope="module")
def api(shared_stack: tuple[Stack, ApiClient]) -> ApiClient:
    return shared_stack[1]


@pytest.fixture(scope="module")
def document(api: ApiClient) -> dict[str, Any]:
    resp = api.get("/openapi.json")
    assert resp.status == 200
    return dict(resp.json)


def all_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, item in document["paths"].items()
            for method, operation in item.items()]


def test_every_operation_has_a_summary_of_its_own_and_a_tag(document: dict[str, Any]) -> None:
    for method, path, operation in all_operations(document):
        assert operation.get("summary") and operation["summary"] != f"{method} {path}", (method, path)
        assert operation.get("tags"), (method, path)


def test_the_token_scheme_is_declared_on_every_route_that_needs_it(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["ApiToken"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Token")
    for method, path, operation in all_operations(document):
        if (method, path) in PUBLIC:
            assert "security" not in operation, (method, path)
        else:
            assert operation.get("security") == [{"ApiToken": []}], (method, path)


def test_add_messages_shows_the_message_fields_and_says_bad_ones_are_rejected_one_by_one(
        document: dict[str, Any]) -> None:
    operation = document["paths"]["/commands/add-messages"]["post"]
    body = document["components"]["schemas"]["AddMessagesRequest"]
    message = body["properties"]["messages"]["items"]["anyOf"][0]
    assert {"id", "account_id", "from", "subject"} <= set(message["required"])  # recipients: to, cc or bcc
    assert "to" not in message["required"] and {"unsubscribe", "to"} <= set(message["properties"])
    assert {"cc", "bcc", "attachments", "deferred_ts", "batch_code"} <= set(message["properties"])
    assert body["examples"][0]["messages"][0]["to"] == ["ada@example.org"]
    assert "rejected" in operation["description"] and "still answers 200" in operation["description"]


def test_every_operation_documents_its_errors_with_their_shape(document: dict[str, Any]) -> None:
    for method, path, operation in all_operations(document):
        responses = operation["responses"]
        expected = {"422", "429"}
        if (method, path) not in PUBLIC:
            expected |= {"401", "403"}
        if "requestBody" in operation:
            expected |= {"413", "415", "422"}
        if "{" in path:
            expected |= {"404"}
        assert expected <= set(responses), (method, path, sorted(expected - set(responses)))
        for status, response in responses.items():
            if status.startswith("4") and "text/html" not in response.get("content", {}):  # pages for people
                assert response["content"]["application/json"]["schema"]["$ref"] in ERROR_SCHEMAS, (path, status)


def test_another_method_on_a_known_path_is_405_with_allow(api: ApiClient) -> None:
    refused = api.request("PATCH", "/tenants", token=ADMIN_TOKEN)
    assert refused.status == 405 and refused.headers["allow"] == "GET, OPTIONS"
    assert "PATCH" in refused.json["detail"]
    options = api.request("OPTIONS", "/tenant/acme", token=ADMIN_TOKEN)
    assert options.status == 204 and options.headers["allow"] == "DELETE, GET, PUT, OPTIONS"
    # a concrete path before a templated one, as OpenAPI matches them
    assert api.request("PUT", "/messages/delete", token=ADMIN_TOKEN).headers["allow"] == "POST, OPTIONS"
    assert api.request("PATCH", "/no/such/route", token=ADMIN_TOKEN).status == 404


def test_a_form_body_is_refused_as_unsupported_not_a_server_error(api: ApiClient) -> None:
    headers = [("content-type", "multipart/form-data"), ("x-api-token", ADMIN_TOKEN)]  # and no boundary
    resp = api.gateway.handle("POST", "/tenants/delete", headers, b'{"tenant_id": "x"}')
    assert resp.status == 415 and b"JSON" in resp.body


def test_a_null_body_is_no_body(api: ApiClient) -> None:
    token = api.create_tenant("nullbody")
    assert api.post("/commands/cleanup-messages", token=token, raw_body=b"null").status == 200
    assert api.post("/tenant", token=ADMIN_TOKEN, raw_body=b"null").status == 422


def test_true_is_not_taken_for_an_integer(api: ApiClient) -> None:
    token = api.create_tenant("notbool")
    resp = api.post("/commands/cleanup-messages", token=token, body={"older_than_seconds": True})
    assert resp.status == 422 and resp.json["detail"][0]["loc"] == ["older_than_seconds"]
    assert api.post("/commands/add-messages", token=token,
                    body={"messages": [], "default_priority": False}).status == 422


def test_the_documented_add_messages_example_is_queued(api: ApiClient, document: dict[str, Any]) -> None:
    token = api.create_tenant("example")
    api.create_account(token)  # the example names account smtp1
    example = document["components"]["schemas"]["AddMessagesRequest"]["examples"][0]
    resp = api.post("/commands/add-messages", token=token, body=example)
    assert resp.status == 200 and resp.json["queued"] == 1, resp.json


def test_the_document_is_valid_openapi_with_unique_operation_ids(document: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(document)  # what a client generator for another language reads first
    ids = [operation["operationId"] for _method, _path, operation in all_operations(document)]
    assert len(ids) == len(set(ids))
