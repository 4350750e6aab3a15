"""Schemathesis against ``/openapi.json``: whatever it sends, with the admin token or a tenant's, no 5xx.

The API is served by the local gateway (the same emulation as the local stack: authorizer, then the api
function) on 127.0.0.1, on a moto stack shared by the module. Each operation of the document gets a bounded
number of generated requests, valid (positive) and invalid (negative) ones, derandomised so a run is
repeatable; every 5xx is collected, with the request that caused it, and the test lists them all at the end.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from local.gateway import HttpApiGateway
from local.template import load_template
from mail_proxy.domain import MessageIn
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message
from tests.integration.test_auth_matrix import shared_stack  # noqa: F401  (module-scoped moto stack)

# valid requests per operation and caller (half as many invalid ones); MAIL_PROXY_FUZZ_EXAMPLES=100
# (and MAIL_PROXY_FUZZ_RANDOM=1 for new examples each run) to search harder by hand
EXAMPLES_PER_OPERATION = int(os.environ.get("MAIL_PROXY_FUZZ_EXAMPLES", "4"))
DERANDOMIZE = os.environ.get("MAIL_PROXY_FUZZ_RANDOM", "") != "1"
# each caller aims at its own tenant (the admin's requests may delete it or replace its key)
TENANTS = {"admin": "fuzzadmin", "tenant": "fuzzco"}


@dataclass
class Target:
    url: str
    schema: Any
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def target(shared_stack: tuple[Stack, ApiClient]) -> Iterator[Target]:  # noqa: F811
    api = shared_stack[1]
    tokens = {"admin": ADMIN_TOKEN}
    for caller, tenant_id in TENANTS.items():
        token = api.create_tenant(tenant_id)
        api.create_account(token)
        assert api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]}).status == 200
        tokens.setdefault(caller, token)
    gateway = HttpApiGateway(api=api.api.lambda_handler, authorizer=api.authorizer.lambda_handler,
                             routes=load_template().http_routes("ApiFunction"), port=0, auth_cache_seconds=0)
    gateway.start()
    try:
        document = requests.get(f"{gateway.url}/openapi.json", timeout=20).json()
        schema = schemathesis.openapi.from_dict(with_message_schema(document))
        yield Target(gateway.url, schema, tokens)
    finally:
        gateway.stop()


def with_message_schema(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the items of ``messages`` described as the API validates them, one by one.

    The contract takes ``messages`` as a list of anything (one bad message must not sink the others, so
    the request itself never validates them); to reach past "each message must be a JSON object", the
    fuzzer is told what a message looks like.
    """
    message_schema = MessageIn.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas = document["components"]["schemas"]
    schemas.update(message_schema.pop("$defs", {}))
    schemas["MessageIn"] = message_schema
    schemas["AddMessagesRequest"]["properties"]["messages"]["items"] = {"$ref": "#/components/schemas/MessageIn"}
    return document


def aim_at(case: Any, tenant_id: str) -> None:
    """Point a generated request at the caller's tenant and account, to reach past the 403s and 404s."""
    for params in (case.path_parameters, case.query):
        if params is not None and "tenant_id" in params:
            params["tenant_id"] = tenant_id
    if isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
        for item in case.body["messages"]:
            if isinstance(item, dict) and "account_id" in item:
                item["account_id"] = "smtp1"
            if isinstance(item, dict) and "tenant_id" in item:
                item["tenant_id"] = tenant_id
            if isinstance(item, dict):  # generated addresses are seldom valid: give some messages valid ones
                item.update({"from": "sender@example.com", "to": ["rcpt@example.org"]})


def describe(case: Any, response: requests.Response) -> str:
    body = case.body if not isinstance(case.body, bytes) else case.body[:300]
    return (f"{response.status_code} {case.method} {case.formatted_path} query={case.query} "
            f"body={json.dumps(body, default=str)[:400]} -> {response.text[:200]}")


class Checker:
    """Sends cases as one caller and collects every 5xx."""

    def __init__(self, target: Target, caller: str, session: requests.Session) -> None:
        self.target, self.session = target, session
        self.token = target.tokens[caller]
        self.failures: list[str] = []
        self.statuses: Counter[int] = Counter()

    def check(self, case: Any) -> None:
        response = case.call(base_url=self.target.url, session=self.session, headers={"X-API-Token": self.token},
                             timeout=20)
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.failures.append(describe(case, response))

    def summary(self) -> str:
        return f"{sum(self.statuses.values())} requests, by status {sorted(self.statuses.items())}"


def edge_cases(schema: Any, tenant_id: str) -> list[Any]:
    """Boundary values the generator seldom reaches, as cases of the document's operations."""
    add = schema["/commands/add-messages"]["POST"]

    def submission(*fields: dict[str, Any], **headers: str) -> Any:
        messages = [message(f"edge{i}", **f) for i, f in enumerate(fields)]
        return add.Case(body={"messages": messages}, query={"tenant_id": tenant_id}, headers=headers or None,
                        media_type="application/json")

    huge = 10**40
    return [
        submission({"deferred_ts": huge}),  # issue 17: beyond the bound, a rejection, not a 500
        submission({"deferred_ts": 10**12}, {"deferred_ts": 2**63}),
        submission({"priority": huge}, {"priority": -1}, {"priority": "urgent"}),
        submission({"subject": "é" * 998, "headers": {"X-Long": "x" * 5000}}),
        submission({"attachments": [{"filename": "a.txt", "storage_path": "@@", "fetch_mode": "base64"}]}),
        submission({"id": "x" * 128}, {"id": "x" * 129}, {"id": "a/b?c#d%"}),
        submission({}, **{"Idempotency-Key": "k" * 256}),
        submission({}, **{"Idempotency-Key": "ünïcode-key"}),
        add.Case(body={"messages": [message("edge"), 1, None, [], "x"], "default_priority": huge},
                 query={"tenant_id": tenant_id}, media_type="application/json"),
        add.Case(body={"messages": [{**message("edge"), "tenant_id": "someone-else"}]},
                 query={"tenant_id": tenant_id}, media_type="application/json"),
    ]


@pytest.mark.parametrize("caller", ["admin", "tenant"])
def test_no_generated_request_gets_a_5xx(target: Target, caller: str) -> None:
    tenant_id = TENANTS[caller]
    with requests.Session() as session:
        checker = Checker(target, caller, session)
        for case in edge_cases(target.schema, tenant_id):
            checker.check(case)
        for result in target.schema.get_all_operations():
            operation = result.ok()
            for mode, examples in ((GenerationMode.POSITIVE, EXAMPLES_PER_OPERATION),
                                   (GenerationMode.NEGATIVE, max(1, EXAMPLES_PER_OPERATION // 2))):

                @settings(max_examples=examples, deadline=None, database=None, derandomize=DERANDOMIZE,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode), own_tenant=st.booleans())
                def run(case: Any, own_tenant: bool) -> None:
                    if own_tenant:
                        aim_at(case, tenant_id)
                    checker.check(case)

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                    assert mode is GenerationMode.NEGATIVE
    print(f"{caller}: {checker.summary()}")
    assert not checker.failures, "\n".join(checker.failures)
    assert checker.statuses[200] > 0, "nothing reached a route's success path"
