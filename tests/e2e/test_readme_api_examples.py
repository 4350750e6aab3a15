"""The README's "API in five requests", run as written against a local stack on other ports than 8000/2525:
the block follows `MAIL_PROXY_PORT` / `MAIL_PROXY_SMTP_PORT`, its example tenant's reports reach the stack's
stand-in application, and the console shows no traceback and no failed report."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from local.harness import running_stack
from local.template import REPO_ROOT

HEADING = "## The API in five requests"


def api_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    return str(block)


def test_the_readme_api_examples_run_on_the_ports_the_variables_name(tmp_path: Path) -> None:
    block = api_block()
    assert "2525" not in block.replace("${MAIL_PROXY_SMTP_PORT:-2525}", "")
    assert "8000" not in block.replace("${MAIL_PROXY_PORT:-8000}", "")
    with running_stack(tmp_path / "stack", verbose=False) as stack:
        port = stack.api_url.rsplit(":", 1)[1]
        environment = {**os.environ, "MAIL_PROXY_PORT": port, "MAIL_PROXY_SMTP_PORT": str(stack.smtp_port),
                       "GMP_API_TOKEN": stack.admin_token}
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        transcript = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}\n{stack.log_tail()}"
        assert done.returncode == 0, transcript
        assert '"queued":1' in done.stdout and '"id":"order-1001"' in done.stdout, transcript
        deadline = time.monotonic() + 30
        reported: list[str] = []
        while time.monotonic() < deadline and "order-1001" not in reported:
            answer = stack.request("GET", "/_local/app", admin=False).json()
            reported = [item["id"] for report in answer["reports"] for item in report["delivery_report"]]
            time.sleep(0.2)
        assert "order-1001" in reported, stack.log_tail()
        log = stack.log_text()
    assert "Traceback" not in log and "report not acknowledged" not in log, log
    assert "REPORT to acme: order-1001 sent" in log, log
