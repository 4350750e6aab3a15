"""AWS cost per million messages, from the requests the real code makes (counted in a run of the submit +
deliver path against moto) at public on-demand prices.

The tenant has a report URL (an HTTP receiver in this process), so the delivery-report path runs too: the
table stream → report router → FIFO reports queue → reporter → the application, and the events marked
reported. Two scenarios, each measured:
- "500/100": the API called with 500 messages a call, the sender invoked with SQS batches of 10 records
  (10 message ids each, so up to 100 messages an invocation): a busy tenant;
- "10/10": 10 messages an API call and one 10-id record an invocation: the target's "10 messages per batch",
  a trickle where every small submission gets its own sender invocation.

What counts per message (DynamoDB units as estimated in ``bench.aws_usage``):
- API Gateway HTTP API: each add-messages call, metered per started 512 KB of request;
- Lambda: one request per invocation (api, authorizer, sender), and GB-seconds = measured handler duration
  (rounded up to the millisecond) x the template's MemorySize. The authorizer runs on every call here
  (no cache): in AWS its result is cached ``AuthorizerCacheSeconds`` (60 s), so that part is an upper bound.
  Durations are measured with moto answering in this process, so they stand in for AWS round trips;
- SQS: every request per started 64 KB (FIFO at its own price), including the event source mapping's
  receives and deletes that delivered something (its empty long polls cost the same with or without mail:
  not per message);
- DynamoDB: write and read request units.
Not per message and not counted: the scheduler's run every minute, empty long polls, storage, PITR,
CloudWatch alarms and dashboard. CloudWatch Logs ingestion is shown apart (outside the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.common import load_average, proxy_ids
from bench.pipeline import PipelineResult, run_pipeline
from bench.sink import SinkProcess, check_exactly_once
from local.template import load_template

# Public on-demand prices, us-east-1, as listed on aws.amazon.com/{api-gateway,lambda,sqs,dynamodb,
# cloudwatch}/pricing/ (checked 2025; DynamoDB on-demand after the November 2024 reduction). USD.
PRICES = {
    "apigw_http_per_request": 1.00 / 1e6,  # HTTP API, first 300 M requests a month; per 512 KB increment
    "lambda_per_request": 0.20 / 1e6,
    "lambda_arm64_per_gb_second": 0.0000133334,  # arm64, first 7.5 billion GB-s a month
    "sqs_standard_per_request": 0.40 / 1e6,  # per 64 KB chunk, after the first million a month
    "sqs_fifo_per_request": 0.50 / 1e6,
    "dynamodb_per_wru": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_per_rru": 0.125 / 1e6,  # on-demand read request unit
    "cloudwatch_logs_per_gb": 0.50,  # ingestion, standard class (not part of the target)
}
APIGW_METERING_BYTES = 512 * 1024
TARGET_USD_PER_MILLION = 3.0
FUNCTIONS = {"api": "ApiFunction", "authorizer": "AuthorizerFunction", "sender": "SenderFunction",
             "report_router": "ReportRouterFunction", "reporter": "ReporterFunction"}
PHASES = ("submit", "deliver", "report")


@dataclass
class Cost:
    label: str
    messages: int
    per_message: dict[str, float]  # units per message, by line
    usd_per_million: dict[str, float]  # by service
    logs_usd_per_million: float
    log_bytes_per_message: float

    @property
    def total(self) -> float:
        return sum(self.usd_per_million.values())


def estimate(result: PipelineResult, label: str) -> Cost:
    template = load_template()
    n = result.messages
    usage = result.usage.by_phase(*PHASES)
    api_requests = sum(max(1, math.ceil(size / APIGW_METERING_BYTES)) for size in result.api_request_bytes)
    invocations = sum(len(result.durations.in_phases(f, PHASES)) for f in FUNCTIONS)
    gb_seconds = 0.0
    for function, logical_id in FUNCTIONS.items():
        memory_gb = template.function_spec(logical_id).memory_mb / 1024
        billed = sum(math.ceil(d * 1000) / 1000 for d in result.durations.in_phases(function, PHASES))
        gb_seconds += billed * memory_gb
    sqs = sum(u.billed_requests - u.empty for (service, op), u in usage.items()
              if service == "sqs" and not op.endswith(".fifo"))
    fifo = sum(u.billed_requests - u.empty for (service, op), u in usage.items()
               if service == "sqs" and op.endswith(".fifo"))
    wru_table = sum(u.wru_table for (service, _), u in usage.items() if service == "dynamodb")
    wru_index = sum(u.wru_index for (service, _), u in usage.items() if service == "dynamodb")
    rru = sum(u.rru for (service, _), u in usage.items() if service == "dynamodb")
    per_message = {
        "api_requests": api_requests / n, "lambda_invocations": invocations / n, "lambda_gb_s": gb_seconds / n,
        "sqs_requests": sqs / n, "sqs_fifo_requests": fifo / n, "wru_table": wru_table / n,
        "wru_index": wru_index / n, "rru": rru / n,
    }
    million = 1e6
    usd = {
        "API Gateway": per_message["api_requests"] * PRICES["apigw_http_per_request"] * million,
        "Lambda requests": per_message["lambda_invocations"] * PRICES["lambda_per_request"] * million,
        "Lambda compute": per_message["lambda_gb_s"] * PRICES["lambda_arm64_per_gb_second"] * million,
        "SQS": (per_message["sqs_requests"] * PRICES["sqs_standard_per_request"]
                + per_message["sqs_fifo_requests"] * PRICES["sqs_fifo_per_request"]) * million,
        "DynamoDB writes": (per_message["wru_table"] + per_message["wru_index"]) * PRICES["dynamodb_per_wru"]
        * million,
        "DynamoDB reads": per_message["rru"] * PRICES["dynamodb_per_rru"] * million,
    }
    log_bytes = sum(result.log_bytes.get(phase, 0) for phase in PHASES) / n
    logs = log_bytes * million / 1e9 * PRICES["cloudwatch_logs_per_gb"]
    return Cost(label, n, per_message, usd, logs, log_bytes)


def print_dynamodb_detail(result: PipelineResult) -> None:
    n = result.messages
    print(f"  DynamoDB per message, {result.api_batch} per API call ({n} messages): "
          "calls, items, average item bytes, write units (table + index), read units")
    for phase in PHASES:
        for (service, operation), u in sorted(result.usage.by_phase(phase).items()):
            if service != "dynamodb":
                continue
            print(f"    {phase:8s} {operation:15s} {u.calls / n:6.3f} calls {u.items / n:6.3f} items "
                  f"{u.item_bytes / max(u.items, 1):6.0f} B  WRU {u.wru_table / n:5.2f} + {u.wru_index / n:4.2f}"
                  f"  RRU {u.rru / n:5.2f}")


def print_report_path(result: PipelineResult) -> None:
    """What the report path alone costs per message (the part a tenant without a report URL does not pay)."""
    n = result.messages
    usage = result.usage.by_phase("report")
    wru = sum(u.wru_table + u.wru_index for u in usage.values())
    calls = sum(u.calls - u.empty for u in usage.values())
    router = len(result.durations.in_phases("report_router", ("report",)))
    reporter = len(result.durations.in_phases("reporter", ("report",)))
    print(f"  of which delivery reports ({n} messages): {calls / n:.3f} AWS requests/msg, {wru / n:.2f} WRU/msg, "
          f"{(router + reporter) / n:.4f} invocations/msg (router {router}, reporter {reporter})")


def _check_reports(result: PipelineResult) -> None:
    if result.reported_sent != result.messages:
        raise AssertionError(f"delivery reports: {result.reported_sent} of {result.messages} 'sent' events reached "
                             "the application")


def run_cost(messages: int, *, time_limit: float = 600.0) -> dict[str, Any]:
    small = min(messages, 500)
    print(f"\n== AWS cost per million messages: requests counted over submit + deliver + delivery reports "
          f"(tenant with a report URL), DynamoDB units estimated from item sizes (load {load_average()})")
    with SinkProcess() as sink:
        busy = run_pipeline(sink.info, messages, api_batch=500, records_per_batch=10, accounting=True,
                            reports=True, time_limit=time_limit)
        check_exactly_once(sink.stats(), proxy_ids(messages), "cost run (500)")
        _check_reports(busy)
        sink.reset()
        trickle = run_pipeline(sink.info, small, api_batch=10, records_per_batch=1, accounting=True,
                               reports=True, time_limit=time_limit)
        check_exactly_once(sink.stats(), proxy_ids(small), "cost run (10)")
        _check_reports(trickle)
    costs = [estimate(busy, f"500/100 ({messages} msgs)"), estimate(trickle, f"10/10 ({small} msgs)")]
    print("  scenario: messages per API call / per sender invocation")
    print(f"    {'':22s}" + "".join(f"{c.label:>24s}" for c in costs))
    rows = [("API requests / msg", "api_requests", ".4f"), ("Lambda invocations / msg", "lambda_invocations", ".4f"),
            ("Lambda GB-s / msg", "lambda_gb_s", ".6f"), ("SQS requests / msg", "sqs_requests", ".4f"),
            ("SQS FIFO requests / msg", "sqs_fifo_requests", ".4f"),
            ("DynamoDB WRU table / msg", "wru_table", ".3f"), ("DynamoDB WRU index / msg", "wru_index", ".3f"),
            ("DynamoDB RRU / msg", "rru", ".3f")]
    for title, key, spec in rows:
        print(f"    {title:26s}" + "".join(f"{format(c.per_message[key], spec):>20s}    " for c in costs))
    print("  USD per million messages:")
    for service in costs[0].usd_per_million:
        print(f"    {service:26s}" + "".join(f"{c.usd_per_million[service]:>20.3f}    " for c in costs))
    print(f"    {'total':26s}" + "".join(f"{c.total:>20.3f}    " for c in costs)
          + f"  (target ≤ {TARGET_USD_PER_MILLION:g} at 10 per batch)")
    print(f"    {'(CloudWatch Logs, apart)':26s}" + "".join(f"{c.logs_usd_per_million:>20.3f}    " for c in costs)
          + "  (" + ", ".join(f"{c.log_bytes_per_message:.0f}" for c in costs) + " bytes of log per message)")
    print(f"  delivery reports: every message's 'sent' event reached the application "
          f"({busy.report_posts} and {trickle.report_posts} POSTs)")
    print_dynamodb_detail(busy)
    print_dynamodb_detail(trickle)
    print_report_path(busy)
    return {
        "usd_per_million": round(costs[1].total, 3),
        "usd_per_million_api_batch_500": round(costs[0].total, 3),
        "usd_breakdown_10": {k: round(v, 3) for k, v in costs[1].usd_per_million.items()},
        "usd_breakdown_500": {k: round(v, 3) for k, v in costs[0].usd_per_million.items()},
        "dynamodb_wru_per_message": round(costs[0].per_message["wru_table"] + costs[0].per_message["wru_index"], 3),
    }
