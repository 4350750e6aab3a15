"""The layer's size as Lambda unpacks it, arm64 / python3.12: ``layers/mail_proxy/Makefile`` (what ``sam build``
runs) into a temporary folder, against the same ``requirements.txt`` installed plainly for the same platform
(``pip install --target``, as SAM's own ``BuildMethod: python3.12`` builder would, before any pruning).
Sizes are bytes of file content (what Lambda's 250 MB unzipped limit counts), in MB of 10^6 bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import LAYER_DIR, load_average

TARGET_MB = 20.0
PLATFORM = "manylinux2014_aarch64"


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def largest_parts(root: Path, count: int = 6) -> list[tuple[str, int]]:
    """The top-level entries of ``root`` by size (a .dist-info folder counts under its distribution's name)."""
    sizes: dict[str, int] = defaultdict(int)
    for entry in root.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        sizes[name.removesuffix(".py")] += entry.stat().st_size if entry.is_file() else tree_bytes(entry)
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:count]


def run_layer() -> dict[str, Any]:
    from bench.coldstart import _python312

    print(f"\n== Layer size, {PLATFORM} / python3.12, unpacked (load {load_average()})")
    python = _python312()
    if python is None:
        raise RuntimeError("no python3.12 found (the layer is built for the python3.12 runtime)")
    with tempfile.TemporaryDirectory(prefix="bench-layer-size-") as tmp:
        work = Path(tmp)
        made = subprocess.run(["make", "-s", "-C", str(LAYER_DIR), "build-MailProxyLayer",
                               f"ARTIFACTS_DIR={work / 'made'}", f"PYTHON={python}", f"PLATFORM={PLATFORM}"],
                              capture_output=True, text=True, timeout=900, check=False)
        if made.returncode != 0:
            raise RuntimeError(f"the layer's Makefile failed: {made.stderr[-1500:]}")
        plain = work / "plain" / "python"
        installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                    "--no-compile", "--only-binary=:all:", "--platform", PLATFORM,
                                    "--python-version", "3.12", "--implementation", "cp", "--target", str(plain),
                                    "-r", str(LAYER_DIR / "requirements.txt")],
                                   capture_output=True, text=True, timeout=900, check=False)
        plain_mb = None
        if installed.returncode == 0:
            shutil.copytree(LAYER_DIR / "mail_proxy", plain / "mail_proxy",
                            ignore=shutil.ignore_patterns("__pycache__"))
            plain_mb = tree_bytes(plain) / 1e6
        else:
            print(f"  (the plain install failed, no baseline: {installed.stderr.strip()[-300:]})")
        layer = work / "made" / "python"
        layer_mb = tree_bytes(layer) / 1e6
        parts = largest_parts(layer)
    print(f"  built by layers/mail_proxy/Makefile: {layer_mb:.1f} MB  (target ≤ {TARGET_MB:g} MB; with .pyc, "
          f"pruned, stripped, without what the runtime provides)")
    if plain_mb is not None:
        print(f"  baseline, requirements.txt installed plainly (no .pyc): {plain_mb:.1f} MB")
    print("  largest parts of the built layer: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in parts))
    return {"layer_mb": round(layer_mb, 1), "layer_plain_mb": round(plain_mb, 1) if plain_mb is not None else None}
