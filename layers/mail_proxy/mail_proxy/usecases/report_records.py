"""One record of the reporter's FIFO queue: its report batch POSTed to the tenant's application, with what that
logs and counts (delivered, waiting for a quiet application, retried later, parked after a day).

``RetryLater`` raised from here makes the record fail, so SQS brings it back after the hide the delivery set.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from mail_proxy.adapters.observability import id_list, logger, metrics, tracer
from mail_proxy.usecases.reporting import ReportDelivery, RetryLater


def deliver_report_record(delivery: ReportDelivery, record: SQSRecord,
                          remaining: Callable[[], int] | None) -> None:
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
