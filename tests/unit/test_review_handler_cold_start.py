"""Each handler starts in a fresh interpreter with only its own function's variables, as in Lambda: every name
it takes from the wiring resolves and the parts it builds are built, with its optional variables set or not."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from local.template import REPO_ROOT, load_template

TEMPLATE = load_template()
FUNCTIONS = sorted(TEMPLATE.logical_ids("AWS::Serverless::Function"))
REQUIRED = {"TABLE_NAME"}
VALUES = {"POWERTOOLS_LOG_LEVEL": "INFO", "GMP_LOG_LEVEL": "INFO", "MAIL_PROXY_ALLOWED_RELAY_NETWORKS": "10.0.0.0/8",
          "IMAP_TIMEOUT_SECONDS": "10", "MAIL_PROXY_PEC_ACCEPTANCE_TIMEOUT_SECONDS": "1800",
          "MAIL_PROXY_SUPPRESSION_DAYS": "365", "MAX_BODY_BYTES": "1024", "METRICS_PUBLIC": "false",
          "PUBLIC_API_URL": "https://mail.example.org"}
BUILDERS = ("_parts", "dispatcher", "mailbox_poller", "_repository", "api_resolver", "smtp_connections")


def function_environment(logical_id: str, *, optional: bool) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "PYTHONPATH": str(REPO_ROOT / "layers" / "mail_proxy")}
    for name in TEMPLATE.function_variable_names(logical_id):
        if optional or name in REQUIRED or name in VALUES:
            env[name] = VALUES.get(name, f"http://127.0.0.1:1/{name.lower()}" if name.endswith("_URL")
                                   else f"local-{name.lower()}")
    return env


@pytest.mark.parametrize("optional", [True, False], ids=["all-variables", "required-only"])
@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_a_handler_starts_cold_with_only_its_own_variables(logical_id: str, optional: bool) -> None:
    code_dir = TEMPLATE.function_spec(logical_id).code_dir
    source = (code_dir / "app.py").read_text(encoding="utf-8")
    used = sorted({alias.name for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.ImportFrom) and node.module == "mail_proxy.wiring" for alias in node.names})
    program = ("import app, mail_proxy.wiring as wiring\n"
               f"for name in {used!r}:\n"
               "    part = getattr(wiring, name)\n"
               f"    if name.endswith({BUILDERS!r}):\n"
               "        part()\n"
               "print('started')\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=code_dir, capture_output=True, text=True, timeout=60,
                          env=function_environment(logical_id, optional=optional), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("started")
