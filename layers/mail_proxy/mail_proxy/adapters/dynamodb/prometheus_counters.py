"""genro-mail-proxy's Prometheus counters: one item per tenant (``METRICS#COUNTERS / <tenant id>``) with one
attribute per counter and account (``c#<counter>#<account id>``), added to atomically."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mail_proxy.adapters.dynamodb.keys import METRICS_PK, counter_attribute, parse_counter_attribute
from mail_proxy.adapters.dynamodb.table import Table, item_key


class PrometheusCounters(Table):
    """Counters kept from the table stream, read on a scrape."""

    def add_prometheus_counts(self, tenant_id: str, counts: Mapping[tuple[str, str], int]) -> None:
        """Add ``(counter, account) → n`` to the tenant's counters in one ``UpdateItem``."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds = []
        for i, ((kind, account), n) in enumerate(sorted(counts.items())):
            names[f"#a{i}"] = counter_attribute(kind, account)
            values[f":v{i}"] = {"N": str(n)}
            adds.append(f"#a{i} :v{i}")
        self._call("update_item", Key=item_key(METRICS_PK, tenant_id), UpdateExpression="ADD " + ", ".join(adds),
                   ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def prometheus_counters(self) -> dict[str, dict[tuple[str, str], int]]:
        """Per tenant, the counters by (counter, account): one query over the counter items."""
        found: dict[str, dict[tuple[str, str], int]] = {}
        for page in self._paginate_query(KeyConditionExpression="pk = :p",
                                         ExpressionAttributeValues={":p": {"S": METRICS_PK}}):
            for item in page:
                series: dict[tuple[str, str], int] = {}
                for name, value in item.items():
                    counter = parse_counter_attribute(name)
                    if counter is not None and "N" in value:
                        series[counter] = int(value["N"])
                found[item["sk"]["S"]] = series
        return found
