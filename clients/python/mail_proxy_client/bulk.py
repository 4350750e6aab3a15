"""Bulk sends: messages read from a JSON, JSON Lines or CSV file and submitted through add-messages in
chunks of at most 1,000 (the proxy's limit per call), with a summary of what was queued and rejected.

Each chunk is one ``add_messages`` call with its own ``Idempotency-Key``, so the client's retries of a
chunk (429, 5xx, a dropped connection) never queue a message twice and never resend the chunks before it.
A chunk the proxy finds too large (413) is split in halves. A chunk that still fails stops the run: the
summary names the messages not submitted.

CSV columns (a header row; empty cells are left out; column names are case-insensitive):

    id, to, cc, bcc, subject, body, html_body (or html), from, reply_to, account_id (or account),
    priority, batch_code, deferred_ts, return_path

``to``, ``cc``, ``bcc`` and ``reply_to`` hold one address or several separated by ``,`` or ``;`` (a
display name with a comma is quoted: ``"Doe, Ada" <ada@example.org>``). A message with ``html_body`` and
no ``body`` is sent as HTML only.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mail_proxy_client.client import MailProxyClient
from mail_proxy_client.errors import MailProxyError, PayloadTooLarge, detail_text

CHUNK_SIZE = 1000
FORMATS = ("json", "jsonl", "csv")
ADDRESS_COLUMNS = ("to", "cc", "bcc")
CSV_COLUMNS: dict[str, str] = {
    "id": "id", "to": "to", "cc": "cc", "bcc": "bcc", "subject": "subject", "body": "body",
    "html_body": "html_body", "html": "html_body", "from": "from", "reply_to": "reply_to",
    "account_id": "account_id", "account": "account_id", "priority": "priority", "batch_code": "batch_code",
    "deferred_ts": "deferred_ts", "return_path": "return_path",
}


class MessagesFileError(ValueError):
    """A messages file that cannot be read or parsed (names the file and, where it can, the line)."""


def file_format(path: Path, given: str | None = None) -> str:
    if given:
        return given
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise MessagesFileError(f"cannot tell the format of {path.name}: name it .json, .jsonl or .csv, "
                            "or give --format")


def read_messages(path: Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """The messages of a file, as add-messages takes them."""
    kind = file_format(path, fmt)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MessagesFileError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise MessagesFileError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if kind == "csv":
        return messages_from_csv(text, str(path))
    if kind == "jsonl":
        return _objects(_json_lines(text, str(path)), str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessagesFileError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list):
        raise MessagesFileError(f"{path}: expected a JSON array of messages (or {{\"messages\": [...]}})")
    return _objects(data, str(path))


def _json_lines(text: str, name: str) -> list[Any]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise MessagesFileError(f"{name}: invalid JSON on line {number}: {exc.msg}") from exc
    return items


def _objects(items: Iterable[Any], name: str) -> list[dict[str, Any]]:
    messages = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise MessagesFileError(f"{name}: message {number} is not a JSON object")
        messages.append(dict(item))
    return messages


def messages_from_csv(text: str, name: str = "CSV") -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise MessagesFileError(f"{name}: no header row")
    columns: dict[str, str] = {}
    for title in reader.fieldnames:
        key = (title or "").strip().lower().replace("-", "_").replace(" ", "_")
        if key not in CSV_COLUMNS:
            raise MessagesFileError(f"{name}: unknown column {title!r}; the columns are "
                                    f"{', '.join(sorted(set(CSV_COLUMNS)))}")
        # a second column for one field would drop one of the two cells without a word
        if title in columns or CSV_COLUMNS[key] in columns.values():
            raise MessagesFileError(f"{name}: column {title!r} names the field {CSV_COLUMNS[key]!r} again; "
                                    "give each field one column (several addresses go in one cell, "
                                    "separated by commas)")
        columns[title] = CSV_COLUMNS[key]
    messages = []
    for row in reader:
        if None in row:
            raise MessagesFileError(f"{name}: line {reader.line_num} has more cells than the header")
        message: dict[str, Any] = {}
        for title, value in row.items():
            value = (value or "").strip()
            if not value:
                continue
            key = columns[title]
            if key in (*ADDRESS_COLUMNS, "reply_to"):
                addresses = split_addresses(value)
                message[key] = addresses if key != "reply_to" or len(addresses) > 1 else addresses[0]
            elif key == "deferred_ts" or (key == "priority" and value.isdigit()):
                try:
                    message[key] = int(value)
                except ValueError as exc:
                    raise MessagesFileError(f"{name}: line {reader.line_num}: {key} must be a whole number "
                                            f"(a Unix time), not {value!r}") from exc
            else:
                message[key] = value
        if message:
            messages.append(message)
    return messages


def split_addresses(value: str) -> list[str]:
    """``a@x, "Doe, Ada" <b@x>; c@x`` → three addresses: commas and semicolons separate, except inside
    quotes or angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        if char in ",;" and not quoted and not angle:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


@dataclass
class BulkSummary:
    total: int
    queued: int = 0
    chunks: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    not_submitted: list[str] = field(default_factory=list)
    error: MailProxyError | None = None

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.not_submitted

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "total": self.total, "queued": self.queued, "rejected": self.rejected,
                "not_submitted": self.not_submitted, "chunks": self.chunks,
                "error": None if self.error is None else {"status": self.error.status,
                                                          "detail": self.error.detail}}

    def reasons(self) -> list[tuple[str, int, list[str]]]:
        """Each rejection reason with how many messages it hit and their ids, most frequent first."""
        counts = Counter(str(item.get("reason")) for item in self.rejected)
        return [(reason, count, [str(item.get("id")) for item in self.rejected if str(item.get("reason")) == reason])
                for reason, count in counts.most_common()]

    def describe(self, *, shown_ids: int = 5) -> str:
        lines = [f"Queued {self.queued:,} of {self.total:,} messages ({self.chunks} chunk"
                 f"{'s' if self.chunks != 1 else ''})."]
        if self.rejected:
            lines.append(f"Rejected {len(self.rejected):,}:")
            width = len(f"{max(count for _, count, _ in self.reasons()):,}")
            for reason, count, ids in self.reasons():
                more = f" and {len(ids) - shown_ids:,} more" if len(ids) > shown_ids else ""
                lines.append(f"  {count:>{width},}  {reason} (ids: {', '.join(ids[:shown_ids])}{more})")
        if self.not_submitted:
            why = f": {self.error.describe()}" if self.error is not None else ""
            lines.append(f"Not submitted {len(self.not_submitted):,}, from '{self.not_submitted[0]}' on{why}.")
        return "\n".join(lines)


def send_in_chunks(client: MailProxyClient, messages: Sequence[Mapping[str, Any]], *, tenant_id: str | None,
                   chunk_size: int = CHUNK_SIZE,
                   on_chunk: Callable[[int], None] | None = None) -> BulkSummary:
    """Submits ``messages`` in order, ``chunk_size`` at a time; ``on_chunk`` is told how many messages each
    finished chunk held. Stops at the first chunk that fails after the client's retries."""
    summary = BulkSummary(total=len(messages))
    run = uuid.uuid4().hex
    pending = [list(messages[start:start + chunk_size]) for start in range(0, len(messages), chunk_size)]
    while pending:
        chunk = pending.pop(0)
        key = f"bulk-{run}-{summary.chunks}"
        try:
            answer = client.add_messages(chunk, tenant_id=tenant_id, idempotency_key=key)
        except PayloadTooLarge as error:
            if len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            summary.chunks += 1
            summary.rejected.append({"id": chunk[0].get("id"), "reason": f"too large: {detail_text(error.detail)}"})
            if on_chunk is not None:
                on_chunk(1)
            continue
        except MailProxyError as error:
            summary.error = error
            summary.not_submitted = [str(m.get("id")) for part in [chunk, *pending] for m in part]
            return summary
        summary.chunks += 1
        summary.queued += int(answer.get("queued") or 0)
        summary.rejected.extend(dict(item) for item in answer.get("rejected") or [])
        if on_chunk is not None:
            on_chunk(len(chunk))
    return summary
