"""Authorizer function: X-API-Token → {role, tenant_id} for the api function (HTTP API simple response)."""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.authorization import authenticate, authorizer_response
from mail_proxy.observability import logger, tracer
from mail_proxy.repository import MailRepository
from mail_proxy.settings import get_settings


@lru_cache(maxsize=1)
def repository() -> MailRepository:
    return MailRepository(get_settings().table_name)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    principal = authenticate(repository(), headers.get("x-api-token"))
    return authorizer_response(principal)
