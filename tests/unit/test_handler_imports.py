"""The handlers in ``functions/*/app.py`` are not in the layer's package, so import-linter does not see them: this
checks, on their syntax tree, that each imports only ``mail_proxy.wiring`` (what the handlers use, built from the
settings), ``mail_proxy.api`` and Powertools, so that building adapters and use cases stays in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from local.template import REPO_ROOT

HANDLERS = sorted((REPO_ROOT / "functions").glob("*/app.py"))
ALLOWED = ("mail_proxy.wiring", "mail_proxy.api", "aws_lambda_powertools", "typing", "__future__")


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (in functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def not_allowed(source: str) -> set[str]:
    return {name for name in imported_modules(source)
            if not any(name == allowed or name.startswith(f"{allowed}.") for allowed in ALLOWED)}


def test_every_function_has_a_handler_file() -> None:
    assert {path.parent.name for path in HANDLERS} >= {"api", "authorizer", "sender", "scheduler", "reporter",
                                                        "report_router", "bounce_poller"}


@pytest.mark.parametrize("path", HANDLERS, ids=[path.parent.name for path in HANDLERS])
def test_a_handler_imports_only_the_wiring_the_api_and_powertools(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert not_allowed(source) == set()
    assert any(name.startswith("mail_proxy.") for name in imported_modules(source))


def test_an_adapter_imported_by_a_handler_is_caught_wherever_it_is_imported() -> None:
    source = ("from typing import Any\nimport mail_proxy.wiring\nfrom mail_proxy.wiring import logger\n"
              "def handler(event: Any, context: Any) -> None:\n"
              "    from mail_proxy.adapters.dynamodb import MailRepository\n    import boto3\n"
              "from . import helpers\nfrom mail_proxy.wiringx import y\n")
    assert not_allowed(source) == {"mail_proxy.adapters.dynamodb", "boto3", ".", "mail_proxy.wiringx"}


def test_every_name_the_wiring_offers_the_handlers_resolves_and_no_other() -> None:
    import mail_proxy.wiring as wiring

    for name in wiring.__all__:
        assert callable(getattr(wiring, name)) or name in {"logger", "metrics", "tracer"}, name
    with pytest.raises(AttributeError):
        wiring.no_such_part  # noqa: B018
    used = set().union(*(imported_names(path.read_text(encoding="utf-8")) for path in HANDLERS))
    assert used <= set(wiring.__all__)


def imported_names(source: str) -> set[str]:
    """The names a handler takes from ``mail_proxy.wiring``."""
    return {alias.name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module == "mail_proxy.wiring" for alias in node.names}
