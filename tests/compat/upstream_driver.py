"""Runs calls of genro-mail-proxy 0.7.0's own ``MailProxyClient`` and prints what each returned.

Executed by the python of the upstream virtualenv (tests/compat/upstream.py builds it), never imported by
the test suite. Reads a plan on stdin::

    {"url": "http://127.0.0.1:port", "token": "...", "tenant_id": null,
     "calls": [["tenants.add", [], {"id": "acme"}], ["health", [], {}], ...]}

and prints one line ``RESULTS <json>``: for each call ``{"call", "ok": true, "value"}`` or
``{"call", "ok": false, "status", "body"}`` (an HTTP error) or ``{"call", "ok": false, "error"}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any


def plain(value: Any) -> Any:
    """A client answer as JSON: dataclasses as their fields (plus the type's name), sets as sorted lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **{k: plain(v) for k, v in dataclasses.asdict(value).items()}}
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def main() -> None:
    import httpx
    from tools.http_client.client import MailProxyClient

    plan = json.load(sys.stdin)
    client = MailProxyClient(plan["url"], token=plan.get("token"), tenant_id=plan.get("tenant_id"))
    results = []
    for name, args, kwargs in plan["calls"]:
        target: Any = client
        for part in name.split("."):
            target = getattr(target, part)
        try:
            value = target(*args, **kwargs)
            results.append({"call": name, "ok": True, "value": plain(value)})
        except httpx.HTTPStatusError as exc:
            results.append({"call": name, "ok": False, "status": exc.response.status_code,
                            "body": exc.response.text[:2000]})
        except Exception as exc:  # reported to the test, which decides
            results.append({"call": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
