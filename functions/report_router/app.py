"""Report router function: table stream → new message events → the tenant's group on the FIFO reports queue.

It also deletes the S3 object of a message's content once the table lets go of it (the payload item was
replaced, deleted or expired by its TTL), so content stored in S3 lives exactly as long as its message needs it.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import (
    logger,
    metrics,
    record_stream_metrics,
    removed_payload_from_stream,
    route_stream_records,
    stored_object_key,
    tracer,
)
from mail_proxy.wiring import report_router_parts as wiring


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
