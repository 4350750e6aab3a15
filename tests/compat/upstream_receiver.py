"""Runs genro-mail-proxy 0.7.0's own report receiver (``FakeClient`` of its test fixtures) on loopback.

Executed by the python of the upstream virtualenv, never imported by the test suite. Argument: a JSON plan
``{"fake_client": path, "csv": path, "proxy_url", "tenant_id", "account_id", "api_token", "batch_size",
"state_file", "stop_file", "timeout"}``. Prints ``READY <base_url>`` once serving, then keeps writing what the
receiver holds (``received_reports``, ``submitted_messages``, ``pending``, ``expected``) to ``state_file``
until ``stop_file`` exists or the timeout passes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path


async def serve(plan: dict) -> None:
    spec = importlib.util.spec_from_file_location("upstream_fake_client", plan["fake_client"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = module.FakeClient(plan["csv"], plan["proxy_url"], plan["tenant_id"], plan["account_id"],
                               batch_size=plan["batch_size"], api_token=plan["api_token"])
    state_file, stop_file = Path(plan["state_file"]), Path(plan["stop_file"])
    deadline = time.monotonic() + plan["timeout"]
    async with client:
        print(f"READY {client.base_url}", flush=True)
        while not stop_file.exists() and time.monotonic() < deadline:
            state = {"received_reports": client.received_reports, "submitted": [m["id"] for m in
                                                                                 client.submitted_messages],
                     "pending": client.pending_count, "expected": client.get_expected_statuses()}
            temporary = state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(state))
            temporary.replace(state_file)
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
