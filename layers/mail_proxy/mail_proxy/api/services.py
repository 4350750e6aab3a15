"""What the routes use: the API's use cases (built by ``mail_proxy.wiring``, which installs their factory
here) and the caller (``principal()``).

The api package does not build adapters or read settings for its services: the wiring module above it does, so
the routes stay a thin HTTP face over the use cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from mail_proxy.adapters.blob_store import BlobStore
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.send_queue import SendQueue
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ConfigurationError
from mail_proxy.usecases.accounts import AccountAdmin
from mail_proxy.usecases.authorization import confirm_principal, principal_from_context
from mail_proxy.usecases.messages import MessageDesk
from mail_proxy.usecases.submission import MessageSubmission
from mail_proxy.usecases.suppressions import SuppressionList
from mail_proxy.usecases.tenants import TenantAdmin


@dataclass(frozen=True)
class ApiServices:
    """The use cases behind the routes, built once per container."""

    repo: MailRepository
    queue: SendQueue
    blobs: BlobStore
    tenants: TenantAdmin
    accounts: AccountAdmin
    submission: MessageSubmission
    messages: MessageDesk
    suppressions: SuppressionList


_factory: list[Callable[[], ApiServices]] = []


def install_services(factory: Callable[[], ApiServices]) -> None:
    """Name what builds the services (``mail_proxy.wiring`` does, on import); built on first use."""
    _factory[:] = [factory]
    services.cache_clear()


@lru_cache(maxsize=1)
def services() -> ApiServices:
    if not _factory:
        raise ConfigurationError("the API's services are not wired: import mail_proxy.wiring first")
    return _factory[0]()


def principal() -> Principal:
    """The caller, as the authorizer decided and as the current key confirms (401 for a revoked key, 403
    for a tenant suspended by an administrator)."""
    event = cast(APIGatewayProxyEventV2, BaseRouter.current_event)  # the resolver's event, seen by every router
    authorizer = event.request_context.authorizer
    context = authorizer.get_lambda if authorizer is not None else None
    who = principal_from_context(context)
    if who.tenant_id:
        logger.append_keys(tenant_id=who.tenant_id)
    return confirm_principal(services().repo, who, event.headers.get("x-api-token"))
