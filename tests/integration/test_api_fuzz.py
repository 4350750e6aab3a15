"""Schemathesis against ``/openapi.json``: the API answers as its document says, with every check.

The API is served by the local gateway (the same emulation as the local stack: authorizer, then the api
function) on 127.0.0.1, on a moto stack shared by the module.

- ``test_schemathesis_finds_nothing_with_every_check`` runs Schemathesis itself (its command line, as a user
  would) with all its checks and its four phases (examples, coverage, fuzzing, stateful), bounded by
  ``max-examples`` and a fixed seed; the configuration below says, for each check that cannot apply to a
  route, why.
- ``test_no_generated_request_gets_a_5xx`` drives the generator from Python with boundary values Schemathesis
  seldom reaches (issue 17), as the admin and as a tenant, and collects every 5xx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack, message

pytestmark = pytest.mark.slow

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
def target(shared_stack: tuple[Stack, ApiClient]) -> Iterator[Target]:
    api = shared_stack[1]
    tokens = {"admin": ADMIN_TOKEN}
    for caller, tenant_id in TENANTS.items():
        token = api.create_tenant(tenant_id)
        api.create_account(token)
        assert api.post("/commands/add-messages", token=token, body={"messages": [message("m1")]}).status == 200
        tokens.setdefault(caller, token)
    tokens["rival"] = api.create_tenant("fuzzrival")  # a tenant that must see nothing of the others
    # API Gateway caches the authorizer's answer per token (AuthorizerCacheSeconds); half the cost of a request
    gateway = HttpApiGateway(api=api.api.lambda_handler, authorizer=api.authorizer.lambda_handler,
                             routes=load_template().http_routes("ApiFunction"), port=0, auth_cache_seconds=300)
    gateway.start()
    try:
        document = requests.get(f"{gateway.url}/openapi.json", timeout=20).json()
        schema = schemathesis.openapi.from_dict(document)
        # the document declares X-API-Token: here every request carries the caller's (Schemathesis's own run
        # below tries requests without it)
        schema.config.generation.update(with_security_parameters=False)
        yield Target(gateway.url, schema, tokens)
    finally:
        gateway.stop()


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


# ------------------------------------------------------------------------------------ Schemathesis, every check

SCHEMATHESIS_EXAMPLES = int(os.environ.get("MAIL_PROXY_SCHEMATHESIS_EXAMPLES", "3"))  # fuzzing cases per operation
SCHEMATHESIS_STATEFUL_EXAMPLES = int(os.environ.get("MAIL_PROXY_SCHEMATHESIS_STATEFUL_EXAMPLES", "25"))
SCHEMATHESIS_SECONDS = 240  # the run stops well before this on a busy machine; the test fails if it does not
CHECKS = "all"
PHASES = "examples,coverage,fuzzing,stateful"

# Rules the api checks that JSON Schema cannot state, so a request valid by the document is refused with 422:
# host names must resolve to public addresses (SSRF guard), e-mail addresses must parse as RFC 5322 mailboxes,
# paths must start with '/', values must hold no control characters, and cursors are opaque tokens the api
# issued, DKIM domains are DNS names. For these operations positive_data_acceptance accepts 422 as well (it keeps
# its other statuses).
SEMANTIC_422 = [
    "POST /account", "POST /accounts/add", "POST /accounts/add_pec",  # SMTP/IMAP host names
    "POST /tenant", "PUT /tenant/{tenant_id}", "POST /tenants/add", "POST /tenants/update",  # paths, addresses
    "POST /suppressions", "POST /messages/add",  # e-mail addresses
    "POST /tenant/{tenant_id}/suspend",  # a reason without control characters
    "GET /messages", "GET /suppressions",  # cursor
    # DKIM: a signing domain must be a dotted DNS name with a top-level label of letters (IDNA-valid)
    "POST /tenant/{tenant_id}/dkim", "GET /tenant/{tenant_id}/dkim/{domain}",
    "DELETE /tenant/{tenant_id}/dkim/{domain}", "POST /tenant/{tenant_id}/dkim/{domain}/rotate",
    "POST /tenant/{tenant_id}/dkim/{domain}/selectors/{selector}/activate",
    "DELETE /tenant/{tenant_id}/dkim/{domain}/selectors/{selector}",
]
POSITIVE_STATUSES = '["2xx", "3xx", "401", "403", "404", "409", "422", "429"]'
# genro-mail-proxy's routes that take the very model of a REST route (TenantCreate, TenantUpdate,
# AccountCreate, AddMessagesRequest): the coverage phase walks that model through the REST route (some 800
# requests fewer); examples, fuzzing and stateful phases still run them
COVERED_BY_REST = ["POST /tenants/add", "POST /tenants/update", "POST /accounts/add", "POST /accounts/add_pec",
                   "POST /messages/add_batch"]


def schemathesis_config(tenant_id: str, auth_file: Any) -> str:
    """schemathesis.toml for one caller: its own tenant in every tenant_id, and the exceptions above."""
    lines = [
        "seed = 1",
        # the caller's token; a rival tenant's as its peer, for object_level_authorization (what the caller
        # creates, the rival must not read)
        "[auth.wfc]",
        f'path = "{auth_file}"',
        'user = "caller"',
        'peers = ["caller", "rival"]',
        "[generation]",
        f"max-examples = {SCHEMATHESIS_EXAMPLES}",
        "database = \"none\"",
        "[phases.coverage]",
        # API Gateway answers TRACE and QUERY itself (404: an HTTP API route cannot name them); the function
        # never sees them, so a 405 with Allow is asked of the api for the methods it can be sent
        'unexpected-methods = ["get", "put", "post", "delete", "patch", "options"]',
        "[phases.stateful.generation]",  # sequences through the inferred links (create, then read or delete)
        f"max-examples = {SCHEMATHESIS_STATEFUL_EXAMPLES}",
        "[parameters]",
        f'tenant_id = "{tenant_id}"',  # query and path: the caller's own tenant, to reach past 403 and 404
    ]
    for name in sorted(set(SEMANTIC_422) | set(COVERED_BY_REST)):
        lines += ["[[operations]]", f'include-name = "{name}"']
        if name in SEMANTIC_422:
            lines.append(f"checks.positive_data_acceptance.expected-statuses = {POSITIVE_STATUSES}")
        if name in COVERED_BY_REST:
            lines.append("phases.coverage.enabled = false")
    return "\n".join(lines) + "\n"


# A tenant's token reaches every route (admin-only ones answer it 403); the admin's token is run on the routes
# only it can use, whose success paths the tenant never reaches.
SCOPES = {"tenant": [], "admin": ["--include-tag", "tenants", "--include-tag", "service"]}


@dataclass
class SchemathesisRun:
    code: int
    output: str
    seconds: float

    @property
    def summary(self) -> str:
        return self.output[self.output.find("SUMMARY"):]


def run_schemathesis(target: Target, caller: str, workdir: Any) -> SchemathesisRun:
    """One Schemathesis run as ``caller``, with its command line, as a user would run it."""
    auth = workdir / f"auth-{caller}.json"
    auth.write_text(json.dumps({"auth": [
        {"name": name, "fixedHeaders": [{"name": "X-API-Token", "value": token}]}
        for name, token in (("caller", target.tokens[caller]), ("rival", target.tokens["rival"]))]}))
    config = workdir / f"schemathesis-{caller}.toml"
    config.write_text(schemathesis_config(TENANTS[caller], auth))
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{target.url}/openapi.json", "--checks", CHECKS, "--phases", PHASES, "--workers", "1",
               "--no-color", "--request-timeout", "30", *SCOPES[caller]]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=SCHEMATHESIS_SECONDS, check=False,
                          cwd=workdir)  # its cache directory goes there, not into the repository
    return SchemathesisRun(done.returncode, done.stdout + done.stderr, time.monotonic() - started)


@pytest.mark.parametrize("caller", ["tenant", "admin"])
def test_schemathesis_finds_nothing_with_every_check(target: Target, tmp_path: Any, caller: str) -> None:
    run = run_schemathesis(target, caller, tmp_path)
    print(f"schemathesis as {caller}: {run.seconds:.0f}s\n{run.summary}")
    assert run.code == 0, run.output[-20000:]
    assert "Tested: " in run.summary and " generated" in run.summary
