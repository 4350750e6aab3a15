"""genro-mail-proxy's Prometheus metrics: counters kept from the table stream, text rendered on a scrape.

Counting happens where message events are already read: the report router's stream batches. Each batch
adds its counts with one ``UpdateItem`` per tenant touched (``ADD`` on one attribute per account and
counter), so the writes grow with the tenants in a batch, not with its messages. A scrape reads the
counter items (one query, one item per tenant), never the messages. The pending gauge is approximate:
the send queues' counts (SQS) plus the messages waiting in the due index for a later time.

Upstream's names and labels: ``gmp_sent_total``, ``gmp_errors_total``, ``gmp_deferred_total``,
``gmp_rate_limited_total`` labelled ``tenant_id, tenant_name, account_id, account_name`` (names default to
the ids), and the gauge ``gmp_pending_messages``. As upstream counts them: ``errors`` leaves out rate-limit
rejections, ``deferred`` includes rate-limit deferrals, ``rate_limited`` counts both.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository, state_change_from_stream

COUNTERS = {
    "sent": ("gmp_sent_total", "Total sent emails"),
    "errors": ("gmp_errors_total", "Total send errors"),
    "deferred": ("gmp_deferred_total", "Total deferred emails"),
    "rate_limited": ("gmp_rate_limited_total", "Total rate limited occurrences"),
}
PENDING = ("gmp_pending_messages", "Current pending messages")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _kinds(event: Mapping[str, Any]) -> list[str]:
    kind = event.get("type")
    rate_limit = str(event.get("description") or "").startswith("rate_limit")
    if kind == "sent":
        return ["sent"]
    if kind == "error":
        return ["rate_limited"] if rate_limit else ["errors"]
    if kind == "deferred":
        return ["deferred", "rate_limited"] if rate_limit else ["deferred"]
    return []


def count_stream_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Counter[tuple[str, str]]]:
    """Per tenant, how many events of each counter (by account) the batch's new message events add."""
    counts: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for record in records:
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        change = state_change_from_stream(dict(record))
        if change is None:
            continue
        account = (((record.get("dynamodb") or {}).get("NewImage") or {}).get("account_id") or {}).get("S") or "default"
        for _index, event in change.events:
            for kind in _kinds(event):
                counts[change.tenant_id][(kind, account)] += 1
    return counts


def record_stream_metrics(repo: MailRepository, records: Iterable[Mapping[str, Any]]) -> int:
    """Adds the batch's counts to the counter items; returns the number of writes (one per tenant)."""
    writes = 0
    for tenant_id, counts in count_stream_records(records).items():
        repo.add_prometheus_counts(tenant_id, counts)
        writes += 1
    return writes


def read_counters(repo: MailRepository) -> dict[str, dict[tuple[str, str], int]]:
    """Per tenant, the counters by (counter, account): one query over the counter items."""
    return repo.prometheus_counters()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(counters: Mapping[str, Mapping[tuple[str, str], int]], tenant_names: Mapping[str, str | None],
           pending: int | None) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for kind, (metric, help_text) in COUNTERS.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for tenant_id in sorted(counters):
            accounts = sorted({account for _kind, account in counters[tenant_id]})
            for account in accounts:
                value = counters[tenant_id].get((kind, account), 0)
                name = tenant_names.get(tenant_id) or tenant_id
                labels = (f'tenant_id="{_label(tenant_id)}",tenant_name="{_label(name)}",'
                          f'account_id="{_label(account)}",account_name="{_label(account)}"')
                lines.append(f"{metric}{{{labels}}} {float(value)}")
    if pending is not None:
        lines += [f"# HELP {PENDING[0]} {PENDING[1]}", f"# TYPE {PENDING[0]} gauge", f"{PENDING[0]} {float(pending)}"]
    return "\n".join(lines) + "\n"


def pending_in_queues(sqs: Any, queue_urls: Iterable[str]) -> int:
    """Messages waiting in the send queues (visible, in flight, delayed): SQS's approximate counts."""
    total = 0
    for url in queue_urls:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        total += sum(int(v) for v in attributes.values())
    return total
