"""Cold-start import time of each handler module, against a bare ``import boto3, pydantic,
aws_lambda_powertools`` in the same run.

Each measurement is a fresh interpreter running ``python -X importtime -c "import app"`` with the function's
directory and the layer on ``sys.path`` (as ``/var/task`` and ``/opt/python`` are in Lambda) and the
function's environment from template.yaml; the total is the sum of every module's own ("self") import
time, byte code cached (in a private ``PYTHONPYCACHEPREFIX``) for both sides. Compiling our own source,
which Lambda did at every cold start while the layer shipped no .pyc (before its Makefile), is timed apart.
Runs are interleaved (baseline, api, authorizer, ... then again) so drift hits all alike; the median of the
repetitions counts.

A second part measures the layer as Lambda gets it, with python3.12: the layer built by its Makefile for this
machine's architecture (the same lock, byte code and all) against the old way (``pip install -r
requirements.txt``, as ``BuildMethod: python3.12`` did: no byte code at all), each with the runtime's boto3
and botocore after it on the path (as ``/var/runtime`` is) and no byte code written (``/opt`` is
read-only), so a module without a .pyc is compiled at every cold start, as in Lambda.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import FUNCTIONS_DIR, LAYER_DIR, ROOT, load_average

HANDLERS = {"api": "ApiFunction", "authorizer": "AuthorizerFunction", "sender": "SenderFunction",
            "scheduler": "SchedulerFunction"}
BASELINE = "import boto3, pydantic, aws_lambda_powertools"
TARGET_RATIO = 1.3
LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
SEEN_ANYWAY = {"encodings", "site", "io", "abc", "codecs", "zipimport", "_frozen_importlib_external"}


def _environment(logical_id: str | None) -> dict[str, str]:
    from local.template import load_template, local_resolved_names

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing"})
    if logical_id is not None:
        template = load_template()
        env.update(template.function_environment(logical_id, local_resolved_names(template)))
    return env


def measure(code: str, path: list[str], env: dict[str, str], pycache: str | None,
            python: str = sys.executable) -> tuple[float, dict[str, float]]:
    """Total import time (seconds) and each top-level package's share (its modules' own import time).

    Byte code is cached under ``pycache`` (``PYTHONPYCACHEPREFIX``), never in the repository; with None, no
    byte code is written and only the .pyc files found beside the sources are used (a read-only layer).
    """
    command = [python, "-X", "importtime", "-c", code]
    env = {**env, "PYTHONPATH": os.pathsep.join(path)}
    env.update({"PYTHONPYCACHEPREFIX": pycache} if pycache else {"PYTHONDONTWRITEBYTECODE": "1"})
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {done.stderr[-2000:]}")
    total = 0
    packages: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        self_us, name = int(match[1]), match[4]
        total += self_us
        packages[name.split(".")[0]] += self_us / 1e6
    return total / 1e6, dict(packages)


def run_coldstart(repetitions: int = 5) -> dict[str, Any]:
    print(f"\n== Cold-start import: python -X importtime, fresh interpreter each, median of {repetitions} "
          f"(load {load_average()})")
    runs: dict[str, list[float]] = defaultdict(list)
    packages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    envs = {name: _environment(logical_id) for name, logical_id in HANDLERS.items()}
    base_env = _environment(None)
    paths = {name: [str(FUNCTIONS_DIR / name), str(LAYER_DIR)] for name in HANDLERS}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        # A first run of each fills the private byte-code cache, so every measured run finds .pyc files.
        measure(BASELINE, [str(LAYER_DIR)], base_env, pycache)
        for name in HANDLERS:
            measure("import app", paths[name], envs[name], pycache)
        _measure_all(repetitions, runs, packages, envs, base_env, paths, pycache)
    _print(runs, packages)
    seconds = compile_seconds()
    print(f"  not included above: compiling our own source, which a layer without .pyc (BuildMethod "
          f"python3.12; the Makefile precompiles) costs every cold start: +{1000 * seconds:.0f} ms")
    return {**_summary(runs), "cold_start_compile_ms": round(1000 * seconds, 1),
            **run_built_layer(repetitions)}


RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")


def _python312() -> str | None:
    found = shutil.which("python3.12")
    candidates = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.12.*/bin/python3.12"), reverse=True)
    for candidate in [*([found] if found else []), *map(str, candidates)]:
        check = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30, check=False)
        if check.returncode == 0:
            return candidate
    return None


def _pip_install(python: str, target: Path, *args: str) -> None:
    command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
               "--target", str(target), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip install failed: {done.stderr[-2000:]}")


def build_layers(python: str, work: Path) -> dict[str, Path]:
    """The layer as its Makefile builds it, the layer as ``BuildMethod: python3.12`` built it, and a stand-in
    for the runtime's own packages, all for this machine's architecture."""
    machine = "aarch64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    made = subprocess.run(["make", "-s", "-C", str(LAYER_DIR), "build-MailProxyLayer",
                           f"ARTIFACTS_DIR={work / 'made'}", f"PLATFORM=manylinux2014_{machine}", f"PYTHON={python}"],
                          capture_output=True, text=True, timeout=900, check=False)
    if made.returncode != 0:
        raise RuntimeError(f"the layer's Makefile failed: {made.stderr[-2000:]}")
    old = work / "old" / "python"
    _pip_install(python, old, "--no-compile", "-r", str(LAYER_DIR / "requirements.txt"))
    shutil.copytree(LAYER_DIR / "mail_proxy", old / "mail_proxy", ignore=shutil.ignore_patterns("__pycache__"))
    runtime = work / "runtime"  # the runtime ships its packages compiled
    _pip_install(python, runtime, "--no-deps",
                 *(f"{name}=={importlib.metadata.version(name)}" for name in RUNTIME_PACKAGES))
    return {"made": work / "made" / "python", "old": old, "runtime": runtime}


def run_built_layer(repetitions: int) -> dict[str, Any]:
    """Cold-start import of each handler against the layer as built, old way and new, with python3.12."""
    python = _python312()
    if python is None:
        print("  built layer: skipped (no python3.12 found)")
        return {}
    print(f"\n== Cold start with the built layer ({python}, no byte code written; median of {repetitions})")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as tmp:
        layers = build_layers(python, Path(tmp))
        for label in ("old", "made"):
            size = sum(p.stat().st_size for p in layers[label].rglob("*") if p.is_file())
            print(f"  {label:4s} layer: {size / 1e6:.1f} MB")
        runs: dict[tuple[str, str], list[float]] = defaultdict(list)
        envs = {name: _environment(logical_id) for name, logical_id in HANDLERS.items()}
        for _ in range(repetitions):
            for name in HANDLERS:
                for label in ("old", "made"):
                    path = [str(FUNCTIONS_DIR / name), str(layers[label]), str(layers["runtime"])]
                    total, _packages = measure("import app", path, envs[name], None, python)
                    runs[(name, label)].append(total)
        for name in HANDLERS:
            old, made = (statistics.median(runs[(name, label)]) for label in ("old", "made"))
            results[name] = {"old_ms": round(1000 * old, 1), "made_ms": round(1000 * made, 1)}
            print(f"  {name:11s} old layer {1000 * old:5.0f} ms   built layer {1000 * made:5.0f} ms   "
                  f"({100 * (made - old) / old:+.0f}%)")
    return {"built_layer_cold_start": results}


def compile_seconds(repetitions: int = 3) -> float:
    """Time to compile the layer's package and the largest function module, as a cold start without .pyc does."""
    sources = [(p, p.read_text(encoding="utf-8")) for p in sorted((LAYER_DIR / "mail_proxy").rglob("*.py"))]
    best = float("inf")
    for _ in range(repetitions):
        started = time.perf_counter()
        for path, text in sources:
            compile(text, str(path), "exec", dont_inherit=True)
        best = min(best, time.perf_counter() - started)
    return best


def _measure_all(repetitions: int, runs: dict[str, list[float]], packages: dict[str, dict[str, list[float]]],
                 envs: dict[str, dict[str, str]], base_env: dict[str, str], paths: dict[str, list[str]],
                 pycache: str) -> None:
    for _ in range(repetitions):
        total, found = measure(BASELINE, [str(LAYER_DIR)], base_env, pycache)
        runs["baseline"].append(total)
        for package, seconds in found.items():
            packages["baseline"][package].append(seconds)
        for name in HANDLERS:
            total, found = measure("import app", paths[name], envs[name], pycache)
            runs[name].append(total)
            for package, seconds in found.items():
                packages[name][package].append(seconds)


def _print(runs: dict[str, list[float]], packages: dict[str, dict[str, list[float]]]) -> None:
    baseline = statistics.median(runs["baseline"])
    print(f"  baseline `{BASELINE}`: {1000 * baseline:.0f} ms "
          f"(runs {', '.join(f'{1000 * r:.0f}' for r in runs['baseline'])})")
    ratios: dict[str, float] = {}
    for name in HANDLERS:
        median = statistics.median(runs[name])
        ratios[name] = median / baseline
        print(f"  {name:11s} {1000 * median:5.0f} ms  ratio {ratios[name]:.2f}  (target ≤ {TARGET_RATIO}; runs "
              f"{', '.join(f'{1000 * r:.0f}' for r in runs[name])})")
        extra = sorted(((statistics.median(v) - statistics.median(packages["baseline"].get(k, [0.0])), k)
                        for k, v in packages[name].items() if k not in SEEN_ANYWAY), reverse=True)[:7]
        print("              more than the baseline, by package: "
              + ", ".join(f"{k} +{1000 * s:.0f} ms" for s, k in extra))


def _summary(runs: dict[str, list[float]]) -> dict[str, Any]:
    baseline = statistics.median(runs["baseline"])
    ratios = {name: statistics.median(runs[name]) / baseline for name in HANDLERS}
    worst = max(ratios.values())
    return {"coldstart_ratio_max": round(worst, 3), "coldstart_baseline_ms": round(1000 * baseline, 1),
            "cold_start_ms": {n: round(1000 * statistics.median(runs[n]), 1) for n in HANDLERS},
            "cold_start_ratio": {n: round(r, 3) for n, r in ratios.items()},
            "cold_start_target_met": worst <= TARGET_RATIO}
