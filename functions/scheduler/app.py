"""Scheduler function (every minute): queue what became due and what was never queued, per tenant."""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.observability import logger, metrics, tracer
from mail_proxy.report_queue import ReportQueue
from mail_proxy.reporting import queue_heartbeats
from mail_proxy.repository import MailRepository
from mail_proxy.scheduling import enqueue_due, reconcile_unqueued
from mail_proxy.send_queue import SendQueue
from mail_proxy.settings import get_settings

STOP_MARGIN_MS = 10_000


@lru_cache(maxsize=1)
def wiring() -> tuple[MailRepository, SendQueue, ReportQueue]:
    settings = get_settings()
    return (MailRepository(settings.table_name), SendQueue(settings.send_queue_urls),
            ReportQueue(settings.report_queue_url, None))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    repo, queue, reports = wiring()
    queued = recovered = held = 0
    tenants = repo.list_tenants()
    heartbeats = queue_heartbeats(repo, reports, tenants)
    for tenant in tenants:
        if context.get_remaining_time_in_millis() < STOP_MARGIN_MS:
            logger.warning("scheduler ran out of time; the next tick continues")
            break
        outcome = enqueue_due(repo, queue, tenant)
        found = reconcile_unqueued(repo, queue, tenant)
        if outcome.queued or outcome.skipped_suspended or found:
            logger.info("tenant scheduled", extra={"tenant_id": tenant["tenant_id"], "queued": outcome.queued,
                                                   "recovered": found, "held": outcome.skipped_suspended})
        queued += outcome.queued
        held += outcome.skipped_suspended
        recovered += found
    # due (scheduled, retried, released) and recovered (accepted but never queued, or a dead sender's claim)
    metrics.add_metric(name="MessagesScheduled", unit=MetricUnit.Count, value=queued)
    metrics.add_metric(name="MessagesRecovered", unit=MetricUnit.Count, value=recovered)
    logger.info("scheduler tick", extra={"queued": queued, "recovered": recovered, "held": held,
                                         "heartbeats": heartbeats, "tenants": len(tenants)})
    return {"queued": queued, "recovered": recovered, "held": held, "heartbeats": heartbeats}
