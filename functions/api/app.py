"""API function: the management API of the HTTP contract (routes live in the layer's ``http_api``)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import api_resolver, logger, metrics, tracer

app = api_resolver()


# never log_event: requests carry tokens, SMTP passwords and message bodies
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True,
                              log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
