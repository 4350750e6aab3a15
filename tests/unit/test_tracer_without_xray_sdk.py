"""The layer ships without the X-Ray SDK: every handler still imports and runs its tracer calls.

Each case is a fresh interpreter. With ``aws_xray_sdk`` made unimportable (as in the built layer, whatever
this virtualenv holds) and Lambda's own variables set (where Powertools' Tracer would otherwise start the
SDK), it imports every function of the template and runs a traced handler. With the SDK importable, the
tracer is X-Ray's in Lambda and outside Lambda it does not even import the SDK.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from local.template import REPO_ROOT, load_template, local_resolved_names

LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "mail-proxy-test"}

SCRIPT = r"""
import json, sys
if sys.argv[2] == "no-sdk":
    sys.modules["aws_xray_sdk"] = None  # no X-Ray SDK, as in the layer: importing it raises ImportError
    sys.modules["aws_xray_sdk.core"] = None
from pathlib import Path
from local.lambdas import import_source
from mail_proxy.adapters.observability import tracer

@tracer.capture_method(capture_response=False)
def double(value):
    tracer.put_annotation(key="tenant_id", value="acme")
    tracer.put_metadata(key="count", value=value)
    return 2 * value

@tracer.capture_lambda_handler(capture_response=False)
def handler(event, context):
    if event.get("fail"):
        raise ValueError("refused")
    return double(event["value"])

failed = None
try:
    if sys.argv[3] == "call":
        handler({"fail": True}, None)
except ValueError as error:
    failed = str(error)
imported = []
for spec in json.loads(sys.argv[1]):
    import_source(Path(spec[0]), "handler_" + spec[1], Path(spec[0]).parent)
    imported.append(spec[1])
print(json.dumps({"provider": type(tracer.provider).__name__, "disabled": tracer.disabled,
                  "answer": handler({"value": 21}, None) if sys.argv[3] == "call" else None, "failed": failed,
                  "imported": imported,
                  "xray_loaded": [m for m, v in sys.modules.items() if m.startswith("aws_xray_sdk") and v]}))
"""


def run(case: str, extra_env: dict[str, str], call: bool = True, import_handlers: bool = True) -> dict[str, Any]:
    template = load_template()
    names = local_resolved_names(template)
    functions = template.logical_ids("AWS::Serverless::Function")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN"))}
    for logical_id in functions:
        env.update(template.function_environment(logical_id, names))
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "mail_proxy"), str(REPO_ROOT)]),
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                **extra_env})
    sources = [[str(template.function_spec(lid).source_file), lid] for lid in functions] if import_handlers else []
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(sources), case, "call" if call else "-"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_handler_imports_and_traces_in_lambda_without_the_xray_sdk() -> None:
    result = run("no-sdk", LAMBDA)
    assert result["provider"] == "NoXRayProvider"
    assert result["disabled"] is False  # Powertools disables a tracer through the SDK, so it must not try
    assert result["answer"] == 42
    assert result["failed"] == "refused"  # a handler's exception goes through the tracer unchanged
    assert sorted(result["imported"]) == sorted(load_template().logical_ids("AWS::Serverless::Function"))
    assert result["xray_loaded"] == []


needs_sdk = pytest.mark.skipif(importlib.util.find_spec("aws_xray_sdk") is None,
                               reason="the X-Ray SDK is not installed here (moto[server] brings it)")


@needs_sdk
def test_outside_lambda_the_tracer_records_nothing_and_never_imports_the_sdk() -> None:
    result = run("sdk", {})
    assert result["provider"] == "NoXRayProvider"
    assert result["answer"] == 42 and result["failed"] == "refused"
    assert result["xray_loaded"] == []


@needs_sdk
def test_in_lambda_with_the_sdk_the_tracer_is_x_rays() -> None:
    result = run("sdk", LAMBDA, call=False, import_handlers=False)
    assert result["provider"] != "NoXRayProvider"
    assert "aws_xray_sdk.core" in result["xray_loaded"]
