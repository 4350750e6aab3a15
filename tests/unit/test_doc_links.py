"""Every relative link in README.md, CHANGELOG.md and docs/*.md names a file or directory that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")])
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def relative_links(text: str) -> list[str]:
    """Link targets outside fenced code blocks and code spans that point inside the repository."""
    prose = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", t, flags=re.IGNORECASE)]


def test_the_documents_are_found() -> None:
    names = {path.relative_to(REPO).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/design.md", "docs/migrating.md", "docs/sam.md"} <= names


def test_the_link_finder_sees_relative_links_and_skips_urls_anchors_and_code() -> None:
    text = ("See [design](docs/design.md#security), [site](https://example.org), [top](#top),\n"
            "`[not](a/link.md)` and\n```\n[neither](b/link.md)\n```\n[ref]: docs/sam.md\n")
    assert relative_links(text) == ["docs/design.md#security", "docs/sam.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_points_to_an_existing_file(document: Path) -> None:
    broken = []
    for target in relative_links(document.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (document.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{document.relative_to(REPO)} links to missing files: {broken}"
