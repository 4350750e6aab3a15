"""The layer is built from a lock with hashes, by its Makefile, without a botocore of its own.

``sam build`` runs ``layers/mail_proxy/Makefile`` (BuildMethod makefile), which installs
``requirements.lock`` with ``pip --require-hashes --no-deps``. Nothing here runs a build: the template, the
Makefile, the lock and ``requirements.txt`` are parsed, and the lock is checked against the metadata of the
packages installed in this virtualenv (their declared dependencies). What the Makefile prunes is checked
against what the code loads from this virtualenv; tests/integration/test_built_layer.py builds the layer.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from local.template import REPO_ROOT, load_template

LAYER = "MailProxyLayer"
# Lambda's python3.12 runtime brings these (boto3 and what it needs); a copy in the layer shadows them
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
# where the layer runs: CPython 3.12 on Linux, arm64
LAMBDA_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.0", "implementation_name": "cpython",
                  "platform_python_implementation": "CPython", "sys_platform": "linux", "os_name": "posix",
                  "platform_system": "Linux", "platform_machine": "aarch64"}
_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]+)")


def layer_dir() -> Path:
    content_uri = load_template().properties(LAYER)["ContentUri"]
    return REPO_ROOT / content_uri


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, [sha256, ...])}`` from a requirements file with hashes (continued lines joined)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _ENTRY.match(line)
        assert match, f"a lock line that pins no version: {line!r}"
        entries[canonicalize_name(match[1])] = (match[2], _HASH.findall(line))
    return entries


def makefile_recipe(text: str, target: str) -> str:
    """The recipe of ``target`` with its continuation lines joined and comment lines dropped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe: list[str] = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        if not line.lstrip("\t@").startswith("#"):
            recipe.append(line.strip())
    return re.sub(r"\\\s+", " ", "\n".join(recipe))


def makefile_variables(text: str) -> dict[str, str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return {m[1]: m[2].strip() for m in re.finditer(r"^([A-Z_]+) *[:?]?= *(.*)$", joined, re.MULTILINE)}


def requirements_txt() -> list[Requirement]:
    lines = (layer_dir() / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def lock() -> dict[str, tuple[str, list[str]]]:
    return lock_entries((layer_dir() / "requirements.lock").read_text(encoding="utf-8"))


def test_the_layer_is_built_by_its_makefile_for_arm64() -> None:
    resource = load_template().resource(LAYER)
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    assert resource["Metadata"]["BuildArchitecture"] == "arm64"
    assert resource["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    text = (layer_dir() / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^build-{LAYER}:", text, re.MULTILINE), "sam build runs make build-<LogicalId>"
    assert makefile_variables(text)["PLATFORM"] == "manylinux2014_aarch64"


def test_the_layer_installs_only_the_lock_with_every_hash_checked() -> None:
    text = (layer_dir() / "Makefile").read_text(encoding="utf-8")
    recipe = makefile_recipe(text, f"build-{LAYER}")
    pip = next(line for line in recipe.splitlines() if "-m pip install" in line)
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "--python-version 3.12",
                 "--implementation cp", "--platform $(PLATFORM)", '-r "$(LOCK)"'):
        assert flag in pip, f"the layer's pip install lacks {flag}"
    assert makefile_variables(text)["LOCK"].endswith("/requirements.lock")
    assert "requirements.txt" not in pip


def test_the_layer_ships_byte_code_that_is_never_recompiled() -> None:
    recipe = makefile_recipe((layer_dir() / "Makefile").read_text(encoding="utf-8"), f"build-{LAYER}")
    compile_line = next(line for line in recipe.splitlines() if "compileall" in line)
    assert compile_line.startswith("$(PYTHON) -m compileall")
    assert "--invalidation-mode unchecked-hash" in compile_line  # zip timestamps cannot make it stale
    assert makefile_variables((layer_dir() / "Makefile").read_text(encoding="utf-8"))["PYTHON"] == "python3.12"


def test_every_locked_package_is_pinned_with_hashes(lock: dict[str, tuple[str, list[str]]]) -> None:
    assert lock, "the lock is empty"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"
        assert all(len(h) == 64 for h in hashes), f"{name}: a hash that is not a sha256"


def test_the_lock_has_no_botocore_nor_anything_else_the_runtime_provides(
        lock: dict[str, tuple[str, list[str]]]) -> None:
    assert "botocore" not in lock
    assert not RUNTIME_PROVIDED & set(lock)
    # and regenerating the lock keeps them out
    flags = makefile_variables((layer_dir() / "Makefile").read_text(encoding="utf-8"))["UV_LOCK_FLAGS"]
    excluded = re.search(r"\$\(foreach p,([^,]+),--no-emit-package \$\(p\)\)", flags)
    assert excluded and set(excluded[1].split()) == RUNTIME_PROVIDED


def test_the_lock_has_every_version_requirements_txt_names(lock: dict[str, tuple[str, list[str]]]) -> None:
    for requirement in requirements_txt():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is in requirements.txt but not in the lock: make lock"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (
            f"requirements.txt asks {requirement} and the lock has {lock[name][0]}: regenerate the lock "
            "(make -C layers/mail_proxy lock)")


def _needs(name: str, extras: set[str]) -> set[str]:
    """What an installed package declares it needs on Lambda (with ``extras``), by canonical name."""
    needed: set[str] = set()
    for text in importlib.metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**LAMBDA_MARKERS, "extra": extra}) for extra in extras | {""}):
            needed.add(canonicalize_name(requirement.name))
    return needed


def test_the_lock_holds_everything_its_packages_need(lock: dict[str, tuple[str, list[str]]]) -> None:
    """pip installs the lock with --no-deps, so a dependency missing from it would be missing in Lambda."""
    extras = {canonicalize_name(requirement.name): set(requirement.extras) for requirement in requirements_txt()}
    for name in lock:
        missing = _needs(name, extras.get(name, set())) - set(lock) - RUNTIME_PROVIDED
        assert not missing, f"{name} needs {sorted(missing)}, which the lock lacks: make -C layers/mail_proxy lock"


# What the layer leaves out of its packages (the Makefile's CRYPTO_KEEP and PRUNE) ---------------------------

# exercises every use the layer makes of pycryptodome, failure paths included, then lists what was loaded
_CRYPTO_PROBE = """
import sys
from mail_proxy.security import crypto
from mail_proxy.mail import dkim_signing
ring = crypto.KeyRing(bytes(32))
value = ring.encrypt("secret", context="c")
assert ring.decrypt(value, context="c") == "secret"
for bad in (value[:-4] + "AAAA", value[:20]):
    try:
        ring.decrypt(bad, context="c")
    except crypto.DecryptionError:
        pass
private, public = dkim_signing.generate_key()
dkim_signing.sign(b"From: a@b.example\\r\\n\\r\\nbody\\r\\n", domain="b.example", selector="s", private_key=private,
                  timestamp=1)
for pem in ("-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n", "nonsense"):
    try:
        dkim_signing.sign(b"From: a@b.example\\r\\n\\r\\n", domain="b.example", selector="s", private_key=pem,
                          timestamp=1)
    except ValueError:
        pass
for name in sorted(sys.modules):
    if name == "Crypto" or name.startswith("Crypto."):
        print("module", name.replace(".", "/").removeprefix("Crypto").lstrip("/") or "__init__",
              getattr(sys.modules[name], "__path__", None) is not None)
with open("/proc/self/maps") as maps:
    for line in maps:
        path = line.split()[-1]
        if "/Crypto/" in path and path.endswith(".so"):
            print("shared", path.rsplit("/Crypto/", 1)[1].split(".")[0])
"""


def crypto_keep() -> list[str]:
    return makefile_variables((layer_dir() / "Makefile").read_text(encoding="utf-8"))["CRYPTO_KEEP"].split()


def kept(stem: str) -> bool:
    return any(fnmatch.fnmatchcase(stem, pattern) for pattern in crypto_keep())


def test_the_layer_must_stay_within_20_mb() -> None:
    assert float(makefile_variables((layer_dir() / "Makefile").read_text(encoding="utf-8"))["MAX_MB"]) <= 20


def test_the_layer_has_pycryptodome_and_no_cryptography(lock: dict[str, tuple[str, list[str]]]) -> None:
    assert "pycryptodome" in lock
    assert not {"cryptography", "cffi", "pycparser"} & set(lock)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="lists loaded shared objects from /proc")
def test_the_crypto_keep_list_has_every_module_and_shared_object_the_code_loads() -> None:
    done = subprocess.run([sys.executable, "-c", _CRYPTO_PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(layer_dir())})
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: set[str] = set()
    for kind, stem, *package in (line.split() for line in done.stdout.splitlines()):
        loaded.add(f"{stem}/__init__" if kind == "module" and package == ["True"] and stem != "__init__" else stem)
    assert {"Cipher/AES", "Cipher/_mode_gcm", "PublicKey/RSA", "Signature/pkcs1_15"} <= loaded
    assert any(stem.startswith("Cipher/_raw_aes") for stem in loaded), "no shared object was seen loading"
    missing = sorted(stem for stem in loaded if not kept(stem))
    assert not missing, f"CRYPTO_KEEP in layers/mail_proxy/Makefile lacks {missing}: the layer would not import"


def test_every_crypto_keep_entry_names_files_pycryptodome_has() -> None:
    stems = {str(f).removeprefix("Crypto/").split(".")[0] for f in importlib.metadata.files("pycryptodome") or []
             if str(f).startswith("Crypto/")}
    stale = [pattern for pattern in crypto_keep() if not fnmatch.filter(stems, pattern)]
    assert not stale, f"CRYPTO_KEEP names what pycryptodome does not have: {stale}"


@pytest.mark.parametrize("stem", ["SelfTest/__init__", "PublicKey/ECC", "PublicKey/_ed25519", "PublicKey/_curve25519",
                                  "PublicKey/_ec_nat", "PublicKey/MLKEM", "Cipher/ChaCha20", "Cipher/_raw_blowfish",
                                  "Hash/SHA3_256", "Signature/eddsa"])
def test_the_crypto_keep_list_leaves_out_what_the_code_never_uses(stem: str) -> None:
    assert not kept(stem)


def test_what_the_layer_prunes_is_imported_by_nothing_it_keeps() -> None:
    prune = makefile_variables((layer_dir() / "Makefile").read_text(encoding="utf-8"))["PRUNE"].split()
    assert "pydantic/v1" in prune
    # never Powertools' Swagger UI assets: /docs serves them
    assert not [p for p in prune if p.startswith("aws_lambda_powertools")]
    sources = [*(layer_dir() / "mail_proxy").rglob("*.py")]
    powertools = importlib.metadata.files("aws-lambda-powertools") or []
    sources += [Path(str(f.locate())) for f in powertools if str(f).endswith(".py")]
    for module in (p.replace("/", ".") for p in prune):
        parent, _, child = module.rpartition(".")
        pattern = re.compile(rf"\b{re.escape(module)}\b|from {re.escape(parent)} import [^\n]*\b{child}\b")
        users = [str(path) for path in sources if pattern.search(path.read_text(encoding="utf-8"))]
        assert not users, f"{module} is pruned from the layer but imported by {users}"
