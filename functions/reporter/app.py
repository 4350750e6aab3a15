"""Reporter function: FIFO report records → signed POSTs to each tenant's application.

A record the application did not acknowledge is hidden for a backoff delay and reported as failed, so
SQS brings it back later; after PARK_AFTER_ATTEMPTS failed POSTs (over 24 hours; hides while the
application asked for quiet do not count) the reporter parks it in the parked queue. Other tenants'
records in the batch are not held up (skip_group_on_error).
"""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.observability import id_list, logger, metrics, tracer
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.settings import ReporterSettings, get_settings
from mail_proxy.usecases.reporting import ReportDelivery, RetryLater, parse_backoff

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@lru_cache(maxsize=1)
def wiring() -> tuple[ReportDelivery, ReportQueue]:
    settings = get_settings(ReporterSettings)
    queue = ReportQueue(settings.report_queue_url, settings.report_parked_queue_url)
    delivery = ReportDelivery(MailRepository(settings.table_name), queue, allow_loopback=settings.allow_loopback,
                              backoff_seconds=parse_backoff(settings.report_backoff))
    return delivery, queue


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    delivery, _queue = wiring()
    logger.remove_keys(["tenant_id"])
    logger.append_keys(sqs_message_id=record.message_id)
    body = record.json_body
    tenant_id = body.get("tenant_id")
    logger.append_keys(tenant_id=tenant_id)
    tracer.put_annotation(key="tenant_id", value=str(tenant_id))
    events = body.get("events") or []
    message_ids = id_list(dict.fromkeys(str(e.get("id")) for e in events))
    receive_count = int(record.attributes.approximate_receive_count or 1)
    sent_ts = int(record.attributes.sent_timestamp or 0) // 1000
    try:
        remaining = lambda_context.get_remaining_time_in_millis if lambda_context is not None else None
        outcome = delivery.handle(body, record_id=record.message_id, receipt_handle=record.receipt_handle,
                                  sent_ts=sent_ts, remaining_ms=remaining)
    except RetryLater as later:
        if later.attempts is None:
            logger.info("report waits: the application asked for quiet",
                        extra={"retry_in_s": later.delay, "events": len(events)})
            raise
        logger.warning("report not acknowledged; retrying later",
                       extra={"reason": later.reason, "retry_in_s": later.delay, "attempts": later.attempts,
                              "receive_count": receive_count, "events": len(events), "message_ids": message_ids})
        metrics.add_metric(name="ReportBatchesFailed", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        logger.exception("report record failed; SQS delivers it again",
                         extra={"receive_count": receive_count, "message_ids": message_ids})
        raise
    if outcome.parked:
        logger.error("report batch parked: the application has not acknowledged it for over a day",
                     extra={"attempts": outcome.attempts, "events": len(events), "message_ids": message_ids})
        metrics.add_metric(name="ReportBatchesFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ReportBatchesParked", unit=MetricUnit.Count, value=1)
    elif outcome.events_acknowledged:
        metrics.add_metric(name="ReportsDelivered", unit=MetricUnit.Count, value=outcome.events_acknowledged)
        logger.info("report delivered", extra={"events": outcome.events_acknowledged, "syncs": outcome.syncs,
                                               "message_ids": message_ids})
    else:
        logger.debug("sync done", extra={"syncs": outcome.syncs, "kind": body.get("kind"), "skipped": outcome.skipped})


# never log_event: report records carry recipients' delivery details
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
