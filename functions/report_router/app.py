"""Report router function: table stream → new message events → the tenant's group on the FIFO reports queue.

It also deletes the S3 object of a message's content once the table lets go of it (the payload item was
replaced, deleted or expired by its TTL), so content stored in S3 lives exactly as long as its message needs it.
"""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.observability import logger, metrics, tracer
from mail_proxy.adapters.payload_store import stored_object_key
from mail_proxy.adapters.report_queue import ReportQueue
from mail_proxy.adapters.repository import MailRepository, removed_payload_from_stream
from mail_proxy.settings import ReportRouterSettings, get_settings
from mail_proxy.usecases.prometheus import record_stream_metrics
from mail_proxy.usecases.reporting import route_stream_records


@lru_cache(maxsize=1)
def wiring() -> tuple[MailRepository, ReportQueue, BlobStore]:
    settings = get_settings(ReportRouterSettings)
    return (MailRepository(settings.table_name), ReportQueue(settings.report_queue_url, None),
            BlobStore(settings.attachment_bucket))


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    repo, queue, blobs = wiring()
    records = event.get("Records") or []
    released = [key for r in records if (key := stored_object_key(removed_payload_from_stream(r)))]
    if released:
        try:
            blobs.delete(released)
        except Exception:  # left to the bucket's lifecycle rule (a safety net); reports must not wait for S3
            logger.exception("stored contents not deleted", extra={"objects": len(released)})
    queued = route_stream_records(repo, queue, records)
    try:  # the /metrics counters, one write per tenant of the batch; never a reason to re-route reports
        record_stream_metrics(repo, event.get("Records") or [])
    except Exception:
        logger.exception("metrics counters not updated for this batch")
    if queued:
        metrics.add_metric(name="ReportEventsQueued", unit=MetricUnit.Count, value=queued)
    return {"queued": queued, "contents_released": len(released)}
