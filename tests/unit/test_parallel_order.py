"""`make test` runs the suite in parallel in the order tests/conftest.py sets: the slow modules first and the
whole-suite IAM check (tests/integration/test_iam_policies.py) last. pytest-xdist's `loadfile` mode would
otherwise hand out the files with the most tests first, and the IAM check's worker could take another file
after the check, whose AWS calls would then go unchecked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import AWS_CALLS_LAST, pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[2]


def test_make_test_keeps_the_collection_order_of_files() -> None:
    makefile = (ROOT / "Makefile").read_text()
    xdist = re.search(r"^XDIST = (.*)$", makefile, re.MULTILINE)
    assert xdist is not None
    assert "--dist loadfile" in xdist.group(1)
    assert "--no-loadscope-reorder" in xdist.group(1)


class _Item:
    def __init__(self, path: str, slow: bool) -> None:
        self.fspath = path
        self._slow = slow

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self._slow else None


def test_slow_modules_come_first_and_the_iam_check_last() -> None:
    items = [_Item("tests/unit/test_a.py", False), _Item(f"tests/integration/{AWS_CALLS_LAST}", False),
             _Item("tests/e2e/test_soak.py", True), _Item("tests/unit/test_b.py", False)]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [Path(str(i.fspath)).name for i in items] == ["test_soak.py", "test_a.py", "test_b.py", AWS_CALLS_LAST]


@pytest.mark.parametrize("module", ["tests/e2e/test_soak.py", "tests/integration/test_api_fuzz.py",
                                    "tests/integration/test_message_state_machine.py"])
def test_the_longest_modules_are_marked_slow(module: str) -> None:
    assert re.search(r"^pytestmark = .*pytest\.mark\.slow", (ROOT / module).read_text(), re.MULTILINE)
