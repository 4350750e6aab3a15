"""Cold-start import time of each handler module, against a bare ``import boto3, pydantic,
aws_lambda_powertools`` in the same run.

Each measurement is a fresh interpreter running ``python -X importtime -c "import app"`` with the function's
directory and the layer on ``sys.path`` (as ``/var/task`` and ``/opt/python`` are in Lambda) and the
function's environment from template.yaml; the total is the sum of every module's own ("self") import
time. Runs are interleaved (baseline, api, authorizer, ... then again) so drift hits all alike; the median
of the repetitions counts.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from typing import Any

from bench.common import FUNCTIONS_DIR, LAYER_DIR, ROOT, load_average

HANDLERS = {"api": "ApiFunction", "authorizer": "AuthorizerFunction", "sender": "SenderFunction",
            "scheduler": "SchedulerFunction"}
BASELINE = "import boto3, pydantic, aws_lambda_powertools"
TARGET_RATIO = 1.2
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


def measure(code: str, path: list[str], env: dict[str, str], pycache: str) -> tuple[float, dict[str, float]]:
    """Total import time (seconds) and each top-level package's share (its modules' own import time).

    Byte code is cached under ``pycache`` (``PYTHONPYCACHEPREFIX``), never in the repository.
    """
    command = [sys.executable, "-X", "importtime", "-c", code]
    env = {**env, "PYTHONPATH": os.pathsep.join(path), "PYTHONPYCACHEPREFIX": pycache}
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
    compile_cost: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        # First runs fill the byte-code cache: the baseline's packages, then each handler, whose first import
        # also compiles our layer's source (as in Lambda, where a `sam build` layer ships no .pyc for it).
        measure(BASELINE, [str(LAYER_DIR)], base_env, pycache)
        first = {name: measure("import app", paths[name], envs[name], pycache)[0] for name in HANDLERS}
        _measure_all(repetitions, runs, packages, envs, base_env, paths, pycache)
    for name in HANDLERS:
        compile_cost[name] = first[name] - statistics.median(runs[name])
    _print(runs, packages, compile_cost)
    return _summary(runs)


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


def _print(runs: dict[str, list[float]], packages: dict[str, dict[str, list[float]]],
           compile_cost: dict[str, float]) -> None:
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
        print(f"              first import, compiling the layer's source: +{1000 * compile_cost[name]:.0f} ms")


def _summary(runs: dict[str, list[float]]) -> dict[str, Any]:
    baseline = statistics.median(runs["baseline"])
    ratios = {name: statistics.median(runs[name]) / baseline for name in HANDLERS}
    worst = max(ratios.values())
    return {"cold_start_ratio_max": round(worst, 3), "cold_start_baseline_ms": round(1000 * baseline, 1),
            "cold_start_ms": {n: round(1000 * statistics.median(runs[n]), 1) for n in HANDLERS},
            "cold_start_ratio": {n: round(r, 3) for n, r in ratios.items()},
            "cold_start_target_met": worst <= TARGET_RATIO}
