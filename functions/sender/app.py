"""Sender function: SQS batches of message ids → claimed, rate-limited, delivered over SMTP.

A record fails (and SQS retries it) only on an unexpected error; SMTP failures are outcomes recorded on
the message. SMTP connections stay open across warm invocations.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import dispatcher, id_list, logger, metrics, parse_record_body, smtp_connections, tracer

processor = BatchProcessor(event_type=EventType.SQS)
connections = smtp_connections()  # open across warm invocations


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    logger.remove_keys(["tenant_id", "priority"])
    logger.append_keys(sqs_message_id=record.message_id)
    try:
        tenant_id, ids, priority = parse_record_body(record.body)
        logger.append_keys(tenant_id=tenant_id, priority=priority)
        tracer.put_annotation(key="tenant_id", value=tenant_id)
        remaining = lambda_context.get_remaining_time_in_millis if lambda_context is not None else (lambda: 60_000)
        report = dispatcher().deliver(tenant_id, ids, priority=priority, remaining_ms=remaining)
    except Exception:
        logger.exception("send record failed; SQS delivers it again, and after 5 receives parks it in the "
                         "lane's dead-letter queue")
        raise
    logger.debug("record delivered", extra={"message_ids": id_list(ids), "report": report.__dict__})


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    dispatcher().new_invocation()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
