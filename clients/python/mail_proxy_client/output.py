"""How the command line shows answers: aligned tables and field lists for people, JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MAX_CELL = 60
_C1 = re.compile("[\x7f-\x9f]")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 control characters


def as_json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    # json escapes C0 controls only; DEL and C1 (a CSI is 0x9b) occur only inside strings: escaped there too
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def cell(key: str, value: Any, *, limit: int | None = MAX_CELL) -> str:
    """One value as a person reads it: ``-`` for nothing, ``yes``/``no``, lists joined, ``*_ts`` as UTC time."""
    if value is None or value == [] or value == {}:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif key.endswith("_ts") and isinstance(value, int | float):
        text = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    elif isinstance(value, list | tuple):
        text = ", ".join(cell(key, item, limit=None) for item in value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={cell(k, v, limit=None)}" for k, v in value.items() if v not in (None, ""))
    else:
        text = str(value)
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text.replace("\t", " ")
    # a bounce's diagnostic or a complaint's fields come from any mailbox: escape sequences are shown, not obeyed
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows under a header line, columns padded to their widest cell; ``(none)`` for no rows."""
    cells = [[cell(key, row.get(key)) for key, _ in columns] for row in rows]
    if not cells:
        return "(none)"
    headers = [title for _, title in columns]
    widths = [max(len(headers[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def fields(record: Mapping[str, Any], keys: Sequence[str] | None = None, *, skip: Iterable[str] = ()) -> str:
    """``name  value`` lines for one record (every key, in order, unless ``keys`` are given)."""
    skipped = set(skip)
    chosen = [k for k in (keys or list(record)) if k not in skipped]
    if not chosen:
        return ""
    width = max(len(k) for k in chosen)
    return "\n".join(f"{k.ljust(width)}  {cell(k, record.get(k), limit=None)}" for k in chosen)
