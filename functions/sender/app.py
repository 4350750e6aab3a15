"""Sender function: SQS batches of message ids → claimed, rate-limited, delivered over SMTP.

A record fails (and SQS retries it) only on an unexpected error; SMTP failures are outcomes recorded on
the message. SMTP connections stay open across warm invocations.
"""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.observability import id_list, logger, metrics, tracer
from mail_proxy.adapters.payload_store import PayloadStore
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.adapters.send_queue import SendQueue, parse_record_body
from mail_proxy.domain.rate_limits import RetryPolicy
from mail_proxy.mail.smtp_client import ConnectionCache
from mail_proxy.settings import SenderSettings, get_settings
from mail_proxy.usecases.attachments import AttachmentFetcher, ContentCache
from mail_proxy.usecases.delivery import DeliveryConfig, Dispatcher
from mail_proxy.usecases.message_content import MessageContent

processor = BatchProcessor(event_type=EventType.SQS)
connections = ConnectionCache()
attachment_cache = ContentCache()


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    settings = get_settings(SenderSettings)
    config = DeliveryConfig(retry=RetryPolicy.parse(settings.retry_delays), smtp_timeout=settings.smtp_timeout,
                            ca_file=settings.smtp_ca_file, address_policy=settings.relay_address_policy())
    blobs = BlobStore(settings.attachment_bucket)
    content = MessageContent(PayloadStore(blobs, settings.payload_inline_max_bytes),
                             AttachmentFetcher(blobs, allow_loopback=settings.allow_loopback, cache=attachment_cache),
                             public_url=settings.public_api_url)
    return Dispatcher(MailRepository(settings.table_name), SendQueue(settings.send_queue_urls), connections, config,
                      content)


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
