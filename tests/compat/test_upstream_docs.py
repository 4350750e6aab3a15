"""Every curl example of genro-mail-proxy 0.7.0's documentation that names a route of this proxy, sent here.

The examples run in the order of the pages, against one stack (the in-process gateway, as the local stack
serves it) where tenant ``acme`` exists with an account; a ``POST /tenant`` example replaces the tenant it
names, and its key becomes the tenant token of the examples that follow. The table of results is in
docs/compat.md ("Upstream's curl examples"); this test keeps it true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.compat.upstream import SRC, Upstream
from tests.compat.upstream_docs import TENANT_TOKENS, CurlExample, examples
from tests.conftest import ADMIN_TOKEN, ApiClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "compat.md"
ROW = re.compile(r"^\| `([^`]+)` \| `(\w+) ([^`]+)` \| (\d{3}) \|")


def run_examples(api: ApiClient) -> list[tuple[CurlExample, int, Any]]:
    keys = {"acme": api.create_tenant("acme")}
    api.create_account(keys["acme"], "smtp-acme")
    results = []
    for example in examples(SRC):
        token = example.token
        if token in TENANT_TOKENS:
            token = keys["acme"]
        elif token is not None:
            token = ADMIN_TOKEN
        headers = {k: v for k, v in example.headers if k.lower() not in ("x-api-token", "content-type")}
        if example.method == "POST" and example.target == "/tenant" and example.body:
            named = json.loads(example.body).get("id")
            api.delete(f"/tenant/{named}", token=ADMIN_TOKEN)
        answer = api.request(example.method, example.target, token=token, headers=headers,
                             raw_body=example.body.encode() if example.body is not None else None)
        if example.method == "POST" and example.target == "/tenant" and answer.status == 201:
            keys[answer.json["tenant_id"]] = answer.json["api_key"]
        results.append((example, answer.status, answer.json))
    return results


def test_every_documented_curl_example_gets_the_answer_docs_compat_md_lists(upstream: Upstream,
                                                                               api: ApiClient) -> None:
    results = run_examples(api)
    assert len(results) >= 40
    assert all(status < 500 for _e, status, _a in results), [(e.source, s, a) for e, s, a in results if s >= 500]
    documented = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            documented[match.group(1)] = int(match.group(4))
    assert {e.source: s for e, s, _a in results} == documented
