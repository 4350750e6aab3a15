"""Sender throughput (issue 3): the real API → moto SQS → sender handler path into a STARTTLS + AUTH sink,
against plain smtplib sending the same rendered messages over one connection to the same sink.

The sink runs in its own process (``bench.sink``), so it does not compete with the sender for this
interpreter. The baseline runs twice before the sender and once after; the best run counts (the ratio is
then the conservative one). Every message must arrive exactly once (counted by ``X-Mail-Proxy-ID``).
"""

from __future__ import annotations

import smtplib
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import TENANT_ID, bench_message, fmt, load_average, message_id, proxy_ids, ratio
from bench.pipeline import PipelineResult, profile_report, run_pipeline
from bench.sink import SinkProcess, check_exactly_once

TARGET_RATIO = 0.5


def render_messages(count: int) -> list[tuple[str, list[str], bytes]]:
    """What the sender would put on the wire for each message: stored payload → MIME (as ``render``)."""
    from mail_proxy.domain.message_models import MessageIn
    from mail_proxy.mail.mime import build_email, message_bytes
    from mail_proxy.mail.mime_addresses import envelope_recipients, envelope_sender

    now = datetime.now(UTC)
    rendered = []
    for index in range(count):
        payload = MessageIn.model_validate(bench_message(index)).payload()
        sender = envelope_sender(payload)
        email = build_email(payload, tenant_id=TENANT_ID, message_id=message_id(index), created_ms=0, now=now)
        rendered.append((sender, envelope_recipients(payload), message_bytes(email)))
    return rendered


def run_baseline(sink: dict[str, Any], rendered: list[tuple[str, list[str], bytes]], time_limit: float) -> float:
    """smtplib on one connection (STARTTLS + login outside the timing); messages per second."""
    context = ssl.create_default_context(cafile=sink["ca_file"])
    with smtplib.SMTP(sink["host"], sink["port"], local_hostname="bench.local", timeout=20) as smtp:
        smtp.starttls(context=context)
        smtp.login(sink["user"], sink["password"])
        started = time.perf_counter()
        for sender, recipients, data in rendered:
            smtp.sendmail(sender, recipients, data)
            if time.perf_counter() - started > time_limit:
                raise TimeoutError(f"the smtplib baseline took longer than {time_limit:g} s")
        return len(rendered) / (time.perf_counter() - started)


def aws_per_message(result: PipelineResult, *phases: str) -> tuple[float, int]:
    """AWS requests per message over the phases (SQS receives that came back empty are not counted: with
    the real event source mapping they are long polls that happen whether or not mail flows), and how many
    empty receives there were."""
    usage = result.usage.by_phase(*phases)
    calls = sum(u.calls - u.empty for u in usage.values())
    empty = sum(u.empty for u in usage.values())
    return calls / result.messages, empty


def print_calls(result: PipelineResult) -> None:
    for phase in ("submit", "deliver"):
        usage = result.usage.by_phase(phase)
        seconds = sum(u.seconds for u in usage.values())
        print(f"  AWS calls while {phase:8s} (per message; time inside the call, moto included):")
        for (service, operation), u in sorted(usage.items(), key=lambda kv: -kv[1].calls):
            empty = f", {u.empty} came back empty" if u.empty else ""
            print(f"    {service + '.' + operation:31s} {u.calls:6d} calls  {u.calls / result.messages:6.3f}/msg  "
                  f"{1000 * u.seconds / max(u.calls, 1):6.2f} ms each{empty}")
        print(f"    {'all':31s} {sum(u.calls for u in usage.values()):6d} calls  "
              f"{1000 * seconds / result.messages:6.2f} ms/msg inside AWS calls")


def run_sender(messages: int, *, profile: bool = False, time_limit: float = 600.0) -> dict[str, Any]:
    print(f"\n== Sender throughput: {messages} messages, API (calls of 500) → moto SQS → sender handler "
          f"(SQS batches of 10 records) → STARTTLS + AUTH sink in its own process (load {load_average()})")
    rendered = render_messages(messages)
    expected = proxy_ids(messages)
    with SinkProcess() as sink:
        baselines = []
        for _ in range(2):  # the first run also warms the sink up
            baselines.append(run_baseline(sink.info, rendered, time_limit))
            check_exactly_once(sink.stats(), expected, "smtplib baseline")
            sink.reset()

        result = run_pipeline(sink.info, messages, time_limit=time_limit)
        stats = sink.stats()
        check_exactly_once(stats, expected, "sender")
        connections = stats["connections"]
        sink.reset()

        baselines.append(run_baseline(sink.info, rendered, time_limit))
        check_exactly_once(sink.stats(), expected, "smtplib baseline (after)")
        sink.reset()

        profiled = None
        if profile:
            count = min(messages, 500)
            profiled = run_pipeline(sink.info, count, profile=True, time_limit=time_limit)
            check_exactly_once(sink.stats(), proxy_ids(count), "sender (profiled)")
            sink.reset()

    baseline = max(baselines)
    rate = result.deliver_rate
    aws_seconds = sum(u.seconds for u in result.usage.by_phase("deliver").values())
    own_seconds = result.deliver_seconds - aws_seconds
    own_rate = messages / own_seconds if own_seconds > 0 else None
    requests, empty = aws_per_message(result, "submit", "deliver")
    deliver_requests, _ = aws_per_message(result, "deliver")
    size = sum(len(data) for _, _, data in rendered) / len(rendered)
    print(f"  messages of {size:.0f} bytes; submit phase {result.submit_seconds:.1f} s "
          f"({messages / result.submit_seconds:.0f} msg/s through the API, not the target here)")
    print(f"  smtplib baseline, one connection:  {', '.join(f'{b:.0f}' for b in baselines)} msg/s "
          f"(two before the sender, one after) → the best, {baseline:.0f}, counts")
    print(f"  sender, delivery phase:            {rate:7.0f} msg/s  ({result.deliver_seconds:.2f} s, "
          f"{result.batches} invocations, {connections} SMTP connection(s)); handler alone {result.handler_rate:.0f}")
    print(f"  ratio sender / smtplib:            {fmt(ratio(rate, baseline))}  (target ≥ {TARGET_RATIO})")
    print(f"  of the delivery phase, {aws_seconds:.2f} s ({100 * aws_seconds / result.deliver_seconds:.0f} %) "
          f"were inside AWS calls (moto in this process); without them the sender would do "
          f"{fmt(own_rate, '.0f')} msg/s = {fmt(ratio(own_rate, baseline))} of smtplib; garbage collection took "
          f"{result.gc_seconds:.2f} s of the phase")
    print(f"  all {messages} arrived exactly once (X-Mail-Proxy-ID), for the baseline and the sender")
    print(f"  AWS requests per message: {requests:.2f} (submit + deliver; delivery alone {deliver_requests:.2f}); "
          f"{empty} empty receives of higher-priority lanes not counted")
    print_calls(result)
    if profiled is not None and profiled.profile is not None:
        print(f"\n  cProfile of the delivery phase ({profiled.messages} messages, "
              f"{profiled.deliver_rate:.0f} msg/s under the profiler):")
        print(profile_report(profiled.profile, profiled.deliver_seconds))
    return {
        "sender_msgs_per_s": round(rate, 1),
        "sender_handler_msgs_per_s": round(result.handler_rate, 1),
        "sender_msgs_per_s_excluding_aws_calls": round(own_rate, 1) if own_rate else None,
        "smtplib_msgs_per_s": round(baseline, 1),
        "sender_over_smtplib": round(rate / baseline, 3),
        "aws_requests_per_message": round(requests, 3),
        "aws_requests_per_message_deliver": round(deliver_requests, 3),
    }
