"""Scheduler function (every minute): queue what became due and what was never queued, per tenant."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import logger, metrics, queue_heartbeats, run_tick, tracer
from mail_proxy.wiring import scheduler_parts as wiring


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
