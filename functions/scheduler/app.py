"""Scheduler function (every minute): queue what became due and what was never queued, per tenant."""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.observability import logger, metrics, tracer
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.adapters.send_queue import SendQueue
from mail_proxy.settings import SchedulerSettings, get_settings
from mail_proxy.usecases.reporting import queue_heartbeats
from mail_proxy.usecases.scheduling import run_tick


@lru_cache(maxsize=1)
def wiring() -> tuple[MailRepository, SendQueue, ReportQueue]:
    settings = get_settings(SchedulerSettings)
    return (MailRepository(settings.table_name), SendQueue(settings.send_queue_urls),
            ReportQueue(settings.report_queue_url, None))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    repo, queue, reports = wiring()
    tenants = repo.list_tenants()
    heartbeats = queue_heartbeats(repo, reports, tenants)
    outcome = run_tick(repo, queue, tenants, context.get_remaining_time_in_millis)
    # due (scheduled, retried, released) and recovered (accepted but never queued, or a dead sender's claim)
    metrics.add_metric(name="MessagesScheduled", unit=MetricUnit.Count, value=outcome.queued)
    metrics.add_metric(name="MessagesRecovered", unit=MetricUnit.Count, value=outcome.recovered)
    logger.info("scheduler tick", extra={"queued": outcome.queued, "recovered": outcome.recovered,
                                         "held": outcome.held, "heartbeats": heartbeats, "tenants": len(tenants)})
    return {"queued": outcome.queued, "recovered": outcome.recovered, "held": outcome.held, "heartbeats": heartbeats}
