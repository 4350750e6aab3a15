"""docs/django.md as a Django user reads it: the settings snippet works as written in a real Django project,
and the requirements line names this repository's client with its ``django`` extra."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.client.conftest import CLIENT_SOURCE, REPO

DOC = REPO / "docs" / "django.md"
CHECK = """
import django
from django.core.mail import get_connection
django.setup()
backend = get_connection()
print(type(backend).__module__, backend.url, backend.token, backend.account, backend.priority)
"""


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="Django is not installed")
def test_the_settings_snippet_configures_the_backend_as_written(tmp_path: Path) -> None:
    [settings_block] = [block for block in blocks("python") if block.startswith("# settings.py")]
    (tmp_path / "docs_settings.py").write_text(settings_block)
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "docs_settings", "MAIL_PROXY_TOKEN": "tenant-key-123",
                   "PYTHONPATH": os.pathsep.join([str(tmp_path), str(CLIENT_SOURCE)])}
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mail_proxy_client.django", "https://abc123.execute-api.eu-west-1.amazonaws.com",
                                   "tenant-key-123", "main", "high"]


def test_the_requirements_line_installs_the_client_with_its_django_extra() -> None:
    [requirements] = blocks("text")
    [line] = [line for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    path, extra = re.fullmatch(r"(\./\S+)\[(\w+)\]", line.strip()).groups()  # type: ignore[union-attr]
    assert path.endswith("/clients/python") and extra == "django"
    project = tomllib.loads((CLIENT_SOURCE / "pyproject.toml").read_text())["project"]
    assert any(r.lower().startswith("django") for r in project["optional-dependencies"]["django"])
    [install] = [b for b in blocks("sh") if "pip install" in b]
    assert "./clients/python[django]" in install and (REPO / "clients" / "python" / "pyproject.toml").exists()
