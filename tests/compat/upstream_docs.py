"""The curl examples of genro-mail-proxy 0.7.0's documentation, parsed so a test can send each one here.

Only the examples addressed to the proxy (``localhost:8000``) are kept; each becomes method, path, headers
and body. Tokens in the examples are placeholders: a tenant's (``$TENANT_TOKEN``, ``$ACME_TENANT_TOKEN``)
is replaced by tenant ``acme``'s key, any other by the admin token; an example without a token is sent
without one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

PROXY = re.compile(r"^https?://localhost:8000")
TENANT_TOKENS = ("$TENANT_TOKEN", "$ACME_TENANT_TOKEN")


@dataclass(frozen=True)
class CurlExample:
    source: str  # docs file and line
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...]
    body: str | None

    @property
    def token(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "x-api-token":
                return value
        return None

    @property
    def label(self) -> str:
        return f"`{self.method} {self.target}`"


def _command(lines: list[str], start: int) -> list[str] | None:
    """The words of the curl command starting at ``lines[start]``, continuation lines and quotes joined."""
    text = ""
    for line in lines[start:start + 60]:
        stripped = line.strip()
        continued = stripped.endswith("\\")
        text += (" " if text else "") + stripped.rstrip("\\")  # some pages escape it twice
        if continued:
            continue
        try:
            words = shlex.split(text, comments=False)
        except ValueError:  # an open quote: the JSON body goes on
            text += "\n"
            continue
        return words
    return None


def parse(words: list[str], source: str) -> CurlExample | None:
    method, target, headers, body = None, None, [], None
    i = 1
    while i < len(words):
        word = words[i]
        if word == "|":
            break
        if word in ("-X", "--request"):
            method, i = words[i + 1], i + 2
            continue
        if word in ("-H", "--header"):
            name, _, value = words[i + 1].partition(":")
            headers.append((name.strip(), value.strip()))
            i += 2
            continue
        if word in ("-d", "--data", "--data-raw"):
            body, i = words[i + 1], i + 2
            continue
        if PROXY.match(word):
            target = PROXY.sub("", word) or "/"
        i += 1
    if target is None:
        return None
    return CurlExample(source, method or ("POST" if body is not None else "GET"), target, tuple(headers), body)


def examples(docs_root: Path) -> list[CurlExample]:
    found = []
    for path in sorted([*docs_root.glob("docs/*.rst"), docs_root / "README.md"]):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not line.lstrip().startswith("curl ") or "localhost:8000" not in " ".join(lines[number:number + 3]):
                continue
            words = _command(lines, number)
            example = parse(words, f"{path.relative_to(docs_root)}:{number + 1}") if words else None
            if example is not None:
                found.append(example)
    return found
