"""Reporter function: FIFO report records → signed POSTs to each tenant's application.

A record the application did not acknowledge is hidden for a backoff delay and reported as failed, so
SQS brings it back later; after PARK_AFTER_ATTEMPTS failed POSTs (over 24 hours; hides while the
application asked for quiet do not count) the reporter parks it in the parked queue. Other tenants'
records in the batch are not held up (skip_group_on_error).
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import deliver_report_record, logger, metrics, tracer
from mail_proxy.wiring import reporter_parts as wiring

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    delivery, _queue = wiring()
    remaining = lambda_context.get_remaining_time_in_millis if lambda_context is not None else None
    deliver_report_record(delivery, record, remaining)


# never log_event: report records carry recipients' delivery details
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
