"""Swagger UI at /docs, opened in headless Chromium (Debian's package): every operation of the document is listed.

The page is Powertools' own (``enable_swagger``): by default it embeds the document and the Swagger UI script and
style Powertools ships, so it renders with no network at all; with ``MAIL_PROXY_SWAGGER_UI_BASE_URL`` it loads
them from that address instead (here a loopback server giving the very files Powertools ships).

The browser is run with ``--dump-dom`` after a virtual-time budget, and the rendered operation blocks
(``id="operations-<tag>-<operationId>"``, which exist only once Swagger UI has drawn the page, not in the embedded
document) are compared with the document's operations. Without /usr/bin/chromium the tests skip, except in CI
(``CI`` or ``MAIL_PROXY_REQUIRE_CHROMIUM`` set: ``.ci/run`` installs it), where a missing browser is a failure.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from local.gateway import HttpApiGateway
from local.template import load_template
from tests.conftest import ApiClient, Stack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
BROWSER_SECONDS = 90


def chromium_or_skip() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI") or os.environ.get("MAIL_PROXY_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is not installed, and CI must run this test (.ci/run installs Debian's chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it and runs this test")


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after Swagger UI has run: Chromium headless, offline apart from loopback."""
    command = [chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
               "--virtual-time-budget=15000", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_SECONDS, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def operations(document: dict[str, Any]) -> dict[str, str]:
    """The block id Swagger UI gives each operation (``operations-<tag>-<operationId>``) -> "METHOD /path"."""
    return {f"operations-{operation['tags'][0]}-{operation['operationId']}": f"{method.upper()} {path}"
            for path, item in document["paths"].items() for method, operation in item.items()}


def missing_operations(document: dict[str, Any], dom: str) -> list[str]:
    """The operations Swagger UI did not draw as operation blocks."""
    drawn = set(re.findall(r'id="(operations-[^"]+)"', dom))
    return sorted(route for block, route in operations(document).items() if block not in drawn)


@pytest.fixture(scope="module")
def api_url(shared_stack: tuple[Stack, ApiClient]) -> Iterator[str]:
    api = shared_stack[1]
    gateway = HttpApiGateway(api=api.api.lambda_handler, authorizer=api.authorizer.lambda_handler,
                             routes=load_template().http_routes("ApiFunction"), port=0, auth_cache_seconds=0)
    gateway.start()
    try:
        yield gateway.url
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def document(api_url: str) -> dict[str, Any]:
    return dict(requests.get(f"{api_url}/openapi.json", timeout=20).json())


def test_swagger_ui_lists_every_operation_without_a_token_or_a_network(api_url: str, document: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    page = requests.get(f"{api_url}/docs", timeout=20)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script src=" not in page.text  # nothing to fetch: script and style are in the page
    dom = rendered_dom(f"{api_url}/docs", tmp_path / "profile")
    assert missing_operations(document, dom) == []
    assert "/commands/add-messages" in dom and "Queue messages" in dom  # path and summary drawn
    assert 'class="btn authorize' in dom  # the X-API-Token scheme offers the Authorize button


def docs_page_with_asset_base(base_url: str) -> str:
    """/docs as the api function answers it when MAIL_PROXY_SWAGGER_UI_BASE_URL is set (a fresh interpreter:
    the setting is read when the function starts, as on Lambda)."""
    event = json.loads((ROOT / "events" / "api_health.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/docs"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /docs"
    script = ("import json, sys; from mail_proxy.api.http_api import app; "
              "print(app.resolve(json.loads(sys.stdin.read()), None)['body'])")
    env = {**os.environ, "MAIL_PROXY_SWAGGER_UI_BASE_URL": base_url, "PYTHONPATH": str(ROOT / "layers" / "mail_proxy"),
           "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1"}
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(event), capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_swagger_ui_assets_come_from_the_configured_base_url(document: dict[str, Any], tmp_path: Path) -> None:
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    for name in ("swagger-ui-bundle.min.js", "swagger-ui.min.css"):  # the files Powertools ships, served apart
        shutil.copy(Path(swagger_ui.__file__).parent / name, site / "assets" / name)
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requested.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = docs_page_with_asset_base(f"{base}/assets/")
        assert f"<script src='{base}/assets/swagger-ui-bundle.min.js'>" in page
        assert "SwaggerUIBundle=" not in page.replace(" ", "")[:5000]  # the bundle is linked, not embedded
        (site / "docs.html").write_text(page)
        dom = rendered_dom(f"{base}/docs.html", tmp_path / "profile")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert any(path.startswith("/assets/swagger-ui-bundle.min.js") for path in requested), requested
    assert missing_operations(document, dom) == []
