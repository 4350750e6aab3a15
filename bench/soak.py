"""The soak (``make soak``; issue 11): N messages (default 10,000) through the local stack (``python -m local``
in a subprocess) into an SMTP server that answers 421, 451, 550 or drops the connection at seeded random, with
the tenant's application failing report syncs at random. At the end: every message final (sent or error),
none lost, none accepted twice by the SMTP server, every message's final event acknowledged by the application
exactly once and no event id acknowledged twice. Prints the figures; exit status 1 if a guarantee broke.

    python -m bench.soak --messages 10000 --seed 7 --smtp-faults 0.1 --app-faults 0.05

A benchmark, not a timed test; ``tests/e2e/test_soak.py`` runs ``run_soak`` with 300 messages in the suite.
Retries and report backoffs are shortened (seconds), and the reports queue's visibility timeout (30 s instead
of 180 s, see ``soak_template``), so the faults resolve within the run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, Deadline, load_average
from local.harness import RunningStack, running_stack
from tests.fixtures.faults import FaultySmtpSink, FlakyReceiver, seeded_smtp_policy

TENANT_ID = "soak"
API_BATCH = 500
STACK_ENV = {
    "MAIL_PROXY_RETRY_DELAYS": "1,2,2,2,2,2",  # six retries: a message fails only on 550 or seven 4xx in a row
    "MAIL_PROXY_REPORT_BACKOFF_SECONDS": "1,1,2",
    "MAIL_PROXY_LOCAL_SCHEDULE_SECONDS": "2",
    "MAIL_PROXY_LOCAL_LOG_LEVEL": "WARNING",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class SoakResult:
    messages: int
    seconds: float = 0.0
    accepted_by_api: int = 0
    sent: int = 0
    errors: int = 0
    waiting: int = 0
    lost: int = 0
    duplicates: int = 0
    smtp_faults: dict[str, int] = field(default_factory=dict)
    report_faults: int = 0
    reports_acknowledged: int = 0
    events_acknowledged_twice: int = 0
    final_events_unacknowledged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def soak_template(report_visibility: int) -> Path:
    """template.yaml with the reports queue's visibility timeout shortened (next to it, so CodeUri paths hold).

    A failed sync fails the tenant's later records of the same batch (FIFO circuit breaker); those stay in
    flight for the queue's visibility timeout (180 s), holding the tenant's reports back that long. With
    random sync failures the soak would spend its time waiting on that, not on anything it measures."""
    text = (ROOT / "template.yaml").read_text()
    head, found, rest = text.partition("  ReportQueue:\n")
    if not found or "VisibilityTimeout: 180" not in rest.split("\n\n", 1)[0]:
        raise RuntimeError("template.yaml: ReportQueue has no 'VisibilityTimeout: 180' to shorten")
    path = ROOT / f".soak-template-{report_visibility}.yaml"
    path.write_text(head + found + rest.replace("VisibilityTimeout: 180", f"VisibilityTimeout: {report_visibility}", 1))
    return path


def _message(index: int) -> dict[str, Any]:
    return {"id": f"s{index:06d}", "account_id": "sink", "from": "shop@example.com",
            "to": [f"customer{index}@example.org"], "subject": f"Soak {index}", "body": "Hello from the soak"}


def _all_messages(stack: RunningStack, token: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    for _page in range(1000):
        query = "/messages?limit=1000&include_history=true" + (f"&cursor={cursor}" if cursor else "")
        answer = stack.request("GET", query, token=token, timeout=60)
        if answer.status != 200:
            raise RuntimeError(f"GET /messages: {answer.status} {answer.body[:300]!r}")
        body = answer.json()
        for record in body["messages"]:
            found[record["id"]] = record
        cursor = body.get("next_cursor")
        if not cursor:
            break
    return found


def run_soak(messages: int, *, seed: int = 7, smtp_faults: float = 0.1, app_faults: float = 0.05,
             max_seconds: float = 900.0, work_dir: Path | None = None, report_visibility: int = 30) -> SoakResult:
    """Runs the soak; the result lists every broken guarantee in ``problems``."""
    result = SoakResult(messages=messages)
    template = soak_template(report_visibility)
    work = work_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    app_random = random.Random(f"{seed}/app")

    def app_policy(call: int, _events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        # the second POST always fails: reports batched by the reporter's window may be few POSTs, and a soak
        # that injected no report fault would prove nothing about them
        failing = app_faults > 0 and (call == 2 or app_random.random() < app_faults)
        return (503, {"error": "busy"}) if failing else (200, {"ok": True})

    try:
        started = time.monotonic()
        with FaultySmtpSink(seeded_smtp_policy(seed, smtp_faults)) as sink, FlakyReceiver(app_policy) as app, \
                running_stack(work, template=template, env=STACK_ENV, stop_timeout=30.0) as stack:
            created = stack.request("POST", "/tenant", {"tenant_id": TENANT_ID, "client_base_url": app.url})
            if created.status != 201:
                raise RuntimeError(f"POST /tenant: {created.status} {created.body[:300]!r}")
            token = created.json()["api_key"]
            account = {"id": "sink", "host": sink.host, "port": sink.port, "tls": "none"}
            if (answer := stack.request("POST", "/account", account, token=token)).status != 201:
                raise RuntimeError(f"POST /account: {answer.status} {answer.body[:300]!r}")
            for first in range(0, messages, API_BATCH):
                batch = [_message(i) for i in range(first, min(first + API_BATCH, messages))]
                answer = stack.request("POST", "/commands/add-messages", {"messages": batch}, token=token, timeout=120)
                if answer.status != 200:
                    result.problems.append(f"add-messages answered {answer.status}: {answer.body[:200]!r}")
                    continue
                result.accepted_by_api += int(answer.json()["queued"])
            expected = {_message(i)["id"] for i in range(messages)}
            deadline = Deadline(max(0.0, max_seconds - (time.monotonic() - started)))
            while not deadline.expired:
                finals = {e["id"] for e in app.acknowledged() if e.get("event") in ("sent", "error")}
                if finals >= expected:
                    break
                time.sleep(0.5)
            time.sleep(2.0)  # anything sent or reported twice would arrive now
            records = _all_messages(stack, token)
            result.seconds = time.monotonic() - started
            statuses = Counter(records[mid]["status"] for mid in expected if mid in records)
            result.sent, result.errors = statuses.get("sent", 0), statuses.get("error", 0)
            result.waiting = sum(statuses.get(s, 0) for s in ("pending", "deferred", "sending"))
            result.lost = len(expected - set(records))
            accepted = Counter({pid.split("/", 1)[1]: n for pid, n in sink.accepted.items()})
            result.duplicates = sum(1 for n in accepted.values() if n > 1)
            result.smtp_faults = {k: v for k, v in sink.answers.items() if k != "250"}
            result.report_faults = app.failed_calls()
            acked = app.acknowledged()
            result.reports_acknowledged = len(acked)
            ack_counts = Counter(str(e.get("event_id")) for e in acked)
            result.events_acknowledged_twice = sum(1 for n in ack_counts.values() if n > 1)
            for mid in expected & set(records):
                history = records[mid].get("history") or []
                if records[mid]["status"] in ("sent", "error") and history \
                        and ack_counts.get(str(history[-1].get("event_id")), 0) != 1:
                    result.final_events_unacknowledged += 1
            sent_not_accepted = [mid for mid in expected if records.get(mid, {}).get("status") == "sent"
                                 and accepted.get(mid, 0) == 0]
            accepted_not_sent = [mid for mid in accepted if records.get(mid, {}).get("status") != "sent"]
            log_tail = stack.log_tail(30)
    finally:
        template.unlink(missing_ok=True)
    if result.accepted_by_api != messages:
        result.problems.append(f"the API queued {result.accepted_by_api} of {messages}")
    if result.lost:
        result.problems.append(f"{result.lost} messages lost")
    if result.waiting:
        result.problems.append(f"{result.waiting} messages not final after {result.seconds:.0f} s")
    if result.duplicates:
        result.problems.append(f"{result.duplicates} messages accepted more than once by the SMTP server")
    if sent_not_accepted or accepted_not_sent:
        result.problems.append(f"stored state disagrees with the SMTP server: sent but never accepted "
                               f"{sent_not_accepted[:5]}, accepted but not sent {accepted_not_sent[:5]}")
    if result.events_acknowledged_twice:
        result.problems.append(f"{result.events_acknowledged_twice} report events acknowledged twice")
    if result.final_events_unacknowledged:
        result.problems.append(f"{result.final_events_unacknowledged} final events not acknowledged exactly once")
    if result.problems:
        result.problems.append("stack log tail:\n" + log_tail)
    return result


def print_figures(result: SoakResult) -> None:
    faults = sum(result.smtp_faults.values())
    print(f"soak: {result.messages} messages in {result.seconds:.1f} s (load {load_average()})")
    print(f"  sent {result.sent}, error {result.errors}, waiting {result.waiting}, lost {result.lost}, "
          f"duplicates {result.duplicates}")
    print(f"  faults injected: SMTP {faults} ({', '.join(f'{k}: {v}' for k, v in sorted(result.smtp_faults.items()))})"
          f", report syncs failed {result.report_faults}")
    print(f"  reports: {result.reports_acknowledged} events acknowledged, "
          f"{result.events_acknowledged_twice} acknowledged twice, "
          f"{result.final_events_unacknowledged} final events not acknowledged exactly once")
    for problem in result.problems:
        print(f"  BROKEN: {problem}")
    summary = {k: v for k, v in asdict(result).items() if k != "problems"}
    print(json.dumps({"soak": summary, "ok": result.ok}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smtp-faults", type=float, default=0.1, help="share of SMTP attempts that fail")
    parser.add_argument("--app-faults", type=float, default=0.05, help="share of report syncs answered 503")
    parser.add_argument("--report-visibility", type=int, default=30,
                        help="ReportQueue visibility timeout for the run (template: 180 s)")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    result = run_soak(args.messages, seed=args.seed, smtp_faults=args.smtp_faults, app_faults=args.app_faults,
                      max_seconds=args.max_seconds, report_visibility=args.report_visibility)
    print_figures(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
