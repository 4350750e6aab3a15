"""Authorizer function: X-API-Token → {role, tenant_id} for the api function (HTTP API simple response)."""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.observability import logger, tracer
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.settings import AuthorizerSettings, get_settings
from mail_proxy.usecases.authorization import authenticate, authorizer_response


@lru_cache(maxsize=1)
def repository() -> MailRepository:
    return MailRepository(get_settings(AuthorizerSettings).table_name)


# never log_event: the event carries the caller's token
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True,
                              log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    principal = authenticate(repository(), headers.get("x-api-token"))
    tracer.put_annotation(key="role", value=principal.role.value)
    if principal.tenant_id:
        tracer.put_annotation(key="tenant_id", value=principal.tenant_id)
    return authorizer_response(principal)
