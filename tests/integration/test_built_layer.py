"""The layer as its Makefile builds it (pruned, stripped, byte-compiled) runs every handler.

The layer is built for this machine's architecture into a temporary directory (the packages come from the
package registry, hash-checked against the lock). Then, for each function in ``functions/``, a python3.12 with
nothing on ``sys.path`` but the standard library, the function's directory, the built layer and the packages
the Lambda runtime provides (boto3, botocore and their dependencies from the dev virtualenv, exposed one by one)
imports the handler's module with the function's environment from template.yaml, as a cold start does. The
API's process also decrypts a value written by ``cryptography``, encrypts one for it, generates and signs with
a DKIM key (verified here with dkimpy and ``cryptography``) and serves ``/openapi.json`` and ``/docs`` (Swagger
UI's bundled assets). Anything the Makefile prunes that the code needs makes this fail.

Skipped only when the registry cannot be reached (or no python3.12 exists) outside CI; in CI that fails.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from local.template import REPO_ROOT, load_template, local_resolved_names
from mail_proxy.security.crypto import PREFIX, key_id

pytestmark = pytest.mark.timeout(600)

LAYER_DIR = REPO_ROOT / "layers" / "mail_proxy"
# what Lambda's python3.12 runtime brings, as top-level names in site-packages
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")
UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
               "Network is unreachable", "ConnectTimeout", "ReadTimeoutError", "Max retries exceeded",
               "No matching distribution found", "Could not find a version that satisfies")
KEY = bytes(range(32))
CONTEXT = "dkim:tenant-1:example.com:sel"
MESSAGE = b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: built layer\r\n\r\nbody\r\n"

# run by the layer's python3.12 with -I -S -B: argv = layer, runtime, function dir, output file, crypto input
PROBE = r"""
import json, os, sys
layer, runtime, function_dir, output, given = sys.argv[1:6]
sys.path[:0] = [function_dir, layer, runtime]
import app
result = {"handler": callable(getattr(app, "lambda_handler", None))}
allowed = (layer, runtime, function_dir, os.path.dirname(os.__file__))
result["outside"] = sorted(name for name, module in list(sys.modules.items())
                           if getattr(module, "__file__", None) and not module.__file__.startswith(allowed))
if given:
    import base64
    from mail_proxy.security import crypto
    from mail_proxy.mail import dkim_signing
    given = json.loads(given)
    ring = crypto.KeyRing(base64.b64decode(given["key"]))
    result["decrypted"] = ring.decrypt(given["value"], context=given["context"])
    result["encrypted"] = ring.encrypt("from the built layer", context=given["context"])
    try:
        ring.decrypt(given["value"], context="another owner")
        result["refused"] = False
    except crypto.DecryptionError:
        result["refused"] = True
    private, public = dkim_signing.generate_key()
    result["private"], result["public"] = private, public
    result["signed"] = dkim_signing.sign(given["message"].encode("latin-1"), domain="example.com", selector="sel",
                                         private_key=private, timestamp=1700000000).decode("latin-1")

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "api", 512, "req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"

    for path in ("/openapi.json", "/docs"):
        event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
                 "headers": {"host": "api.example.com"}, "isBase64Encoded": False,
                 "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                                    "domainPrefix": "api", "requestId": "req-1", "routeKey": "$default",
                                    "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
                                    "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                             "sourceIp": "127.0.0.1", "userAgent": "probe"}}}
        response = app.lambda_handler(event, Context())
        result[path] = {"status": response["statusCode"], "body": response.get("body", "")[:200],
                        "swagger_ui": "SwaggerUIBundle" in response.get("body", ""),
                        "length": len(response.get("body", ""))}
with open(output, "w") as out:
    json.dump(result, out)
"""


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def python312() -> str | None:
    found = shutil.which("python3.12")
    candidates = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.12.*/bin/python3.12"), reverse=True)
    for candidate in [*([found] if found else []), *map(str, candidates)]:
        check = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30, check=False)
        if check.returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def python() -> str:
    found = python312()
    if found is None:
        skip_or_fail("no python3.12 to build and run the layer with")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def built(python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("built-layer")
    machine = "aarch64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    made = subprocess.run(["make", "-C", str(LAYER_DIR), "build-MailProxyLayer", f"ARTIFACTS_DIR={work}",
                           f"PLATFORM=manylinux2014_{machine}", f"PYTHON={python}"],
                          capture_output=True, text=True, timeout=540, check=False)
    if made.returncode != 0:
        output = made.stdout[-3000:] + made.stderr[-3000:]
        if any(sign in output for sign in UNREACHABLE):
            skip_or_fail(f"the package registry is unreachable: {output[-1500:]}")
        pytest.fail(f"the layer's Makefile failed:\n{output}")
    assert "layer: " in made.stdout, made.stdout[-2000:]
    return work / "python"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3, botocore and what they need, from the dev virtualenv, each linked by itself (not site-packages)."""
    directory = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is not installed in the dev virtualenv"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (directory / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return directory


def functions() -> dict[str, str]:
    """``{directory name: logical id}`` of every function in the template, checked against functions/."""
    template = load_template()
    found = {}
    for logical_id in template.logical_ids("AWS::Serverless::Function"):
        code_uri = str(template.properties(logical_id).get("CodeUri", ""))
        if code_uri.startswith("functions/"):
            found[code_uri.removeprefix("functions/").strip("/")] = logical_id
    assert set(found) == {p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py")}
    return found


def probe(python: str, built: Path, runtime: Path, function: str, logical_id: str, tmp_path: Path,
          given: dict[str, str] | None = None) -> dict[str, Any]:
    template = load_template()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "AWS_", "POWERTOOLS_", "MAIL_PROXY_"))}
    env.update(template.function_environment(logical_id, local_resolved_names(template)))
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_LAMBDA_FUNCTION_NAME": function})
    output = tmp_path / f"{function}.json"
    done = subprocess.run([python, "-I", "-S", "-B", "-c", PROBE, str(built), str(runtime),
                           str(REPO_ROOT / "functions" / function), str(output), json.dumps(given) if given else ""],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{function} does not import from the built layer:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return result


def test_the_built_layer_is_pruned_and_within_its_size(built: Path) -> None:
    assert not (built / "Crypto" / "SelfTest").exists()
    assert not (built / "pydantic" / "v1").exists()
    assert not list(built.glob("Crypto/PublicKey/_ed25519*"))
    assert not (built / "cryptography").exists() and not (built / "cffi").exists()
    assert list((built / "aws_lambda_powertools" / "event_handler" / "openapi" / "swagger_ui").glob("*.js"))
    size = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    assert size <= 20e6, f"the layer is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("function", sorted(functions()))
def test_every_handler_imports_from_the_built_layer_and_the_runtime_alone(
        function: str, python: str, built: Path, runtime: Path, tmp_path: Path) -> None:
    result = probe(python, built, runtime, function, functions()[function], tmp_path)
    assert result["handler"], f"functions/{function}/app.py has no lambda_handler"
    assert result["outside"] == [], "modules came from outside the layer, the runtime and the standard library"


def test_the_built_layer_encrypts_signs_and_serves_the_docs_compatibly_with_cryptography(
        python: str, built: Path, runtime: Path, tmp_path: Path) -> None:
    nonce = bytes(range(12))
    sealed = AESGCM(KEY).encrypt(nonce, b"stored by cryptography", CONTEXT.encode())
    given = {"key": base64.b64encode(KEY).decode(), "context": CONTEXT, "message": MESSAGE.decode("latin-1"),
             "value": f"{PREFIX}{key_id(KEY)}:{base64.b64encode(nonce + sealed).decode()}"}
    result = probe(python, built, runtime, "api", functions()["api"], tmp_path, given)

    assert result["decrypted"] == "stored by cryptography"
    assert result["refused"] is True
    data = base64.b64decode(result["encrypted"].rsplit(":", 1)[1])
    assert AESGCM(KEY).decrypt(data[:12], data[12:], CONTEXT.encode()) == b"from the built layer"

    private = serialization.load_pem_private_key(result["private"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and result["private"].startswith("-----BEGIN PRIVATE KEY-----")
    assert base64.b64decode(result["public"]) == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    signed = result["signed"].encode("latin-1")
    record = f"v=DKIM1; k=rsa; p={result['public']}".encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)

    assert result["/openapi.json"]["status"] == 200, result["/openapi.json"]
    assert '"paths"' in result["/openapi.json"]["body"] or '"openapi"' in result["/openapi.json"]["body"]
    assert result["/docs"]["status"] == 200, result["/docs"]
    assert result["/docs"]["swagger_ui"], "Swagger UI's bundled JavaScript is missing from /docs"
