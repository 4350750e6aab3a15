"""Everything the Lambda handlers use, built from the settings once per process (a warm container keeps it).

The handlers in ``functions/*/app.py`` import from this module only (and from Powertools): what each one runs, its
observability, and the objects it needs, built here from that function's own settings class
(``get_settings(SenderSettings)``, ...). Nothing below this module builds its own adapters for a handler; the API's
use cases are built here too and handed to the api package (which caches them, so
``mail_proxy.api.http_api.reset_services`` forgets them as a new container would).

The local stack runs every function in one process, each in its own settings scope: each builder below is
called by one function only, so it is built with that function's settings.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import id_list, logger, metrics, tracer
from mail_proxy.settings import (
    ApiSettings,
    AuthorizerSettings,
    BouncePollerSettings,
    ReporterSettings,
    ReportRouterSettings,
    SchedulerSettings,
    SenderSettings,
    get_settings,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from mail_proxy.adapters.blob_store import BlobStore
    from mail_proxy.adapters.dynamodb import removed_payload_from_stream
    from mail_proxy.adapters.payload_store import stored_object_key
    from mail_proxy.adapters.report_queue import ReportQueue
    from mail_proxy.adapters.send_queue import SendQueue, parse_record_body
    from mail_proxy.api.services import ApiServices
    from mail_proxy.mail.smtp_pool import ConnectionCache
    from mail_proxy.usecases.attachments import ContentCache
    from mail_proxy.usecases.authorization import authenticate, authorizer_response
    from mail_proxy.usecases.bounce_polling import MailboxPoller
    from mail_proxy.usecases.delivery import Dispatcher
    from mail_proxy.usecases.prometheus import record_stream_metrics
    from mail_proxy.usecases.report_records import deliver_report_record
    from mail_proxy.usecases.report_routing import queue_heartbeats, route_stream_records
    from mail_proxy.usecases.reporting import ReportDelivery
    from mail_proxy.usecases.scheduling import run_tick

# What a handler calls, imported when a handler first names it: each function loads only its own modules (a cold
# start pays for what it uses; the authorizer, on every API call's path, stays small).
_ON_FIRST_USE = {
    "authenticate": "mail_proxy.usecases.authorization",
    "authorizer_response": "mail_proxy.usecases.authorization",
    "deliver_report_record": "mail_proxy.usecases.report_records",
    "parse_record_body": "mail_proxy.adapters.send_queue",
    "queue_heartbeats": "mail_proxy.usecases.report_routing",
    "record_stream_metrics": "mail_proxy.usecases.prometheus",
    "removed_payload_from_stream": "mail_proxy.adapters.dynamodb",
    "route_stream_records": "mail_proxy.usecases.report_routing",
    "run_tick": "mail_proxy.usecases.scheduling",
    "stored_object_key": "mail_proxy.adapters.payload_store",
}


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
    globals()[name] = value
    return value


__all__ = [  # what the handlers may use
    "api_resolver", "authenticate", "authorizer_repository", "authorizer_response", "deliver_report_record",
    "dispatcher",
    "id_list", "logger", "mailbox_poller", "metrics", "parse_record_body", "queue_heartbeats",
    "record_stream_metrics", "removed_payload_from_stream", "report_router_parts", "reporter_parts",
    "route_stream_records", "run_tick", "scheduler_parts", "smtp_connections", "stored_object_key", "tracer",
]


# --------------------------------------------------------------------------------------------- api


def api_services() -> ApiServices:
    """The API's use cases (the api package caches them: one set per container)."""
    from mail_proxy.adapters.blob_store import BlobStore
    from mail_proxy.adapters.payload_store import PayloadStore
    from mail_proxy.adapters.report_queue import ReportQueue
    from mail_proxy.adapters.send_queue import SendQueue
    from mail_proxy.api.services import ApiServices
    from mail_proxy.usecases.accounts import AccountAdmin
    from mail_proxy.usecases.messages import MessageDesk
    from mail_proxy.usecases.submission import MessageSubmission
    from mail_proxy.usecases.suppressions import SuppressionList
    from mail_proxy.usecases.tenants import TenantAdmin

    settings = get_settings(ApiSettings)
    repo = MailRepository(settings.table_name)
    queue = SendQueue(settings.send_queue_urls)
    blobs = BlobStore(settings.attachment_bucket)
    payloads = PayloadStore(blobs, settings.payload_inline_max_bytes)
    reports = ReportQueue(settings.report_queue_url, settings.report_parked_queue_url)
    return ApiServices(repo=repo, queue=queue, blobs=blobs, tenants=TenantAdmin(repo, blobs),
                       accounts=AccountAdmin(repo), submission=MessageSubmission(repo, queue, payloads),
                       messages=MessageDesk(repo, queue, reports, payloads),
                       suppressions=SuppressionList(repo, days=settings.suppression_days))


def api_resolver() -> APIGatewayHttpResolver:
    """The management API's resolver, with ``api_services`` installed as what its routes use."""
    from mail_proxy.api.http_api import app
    from mail_proxy.api.services import install_services

    install_services(api_services)
    return app


# --------------------------------------------------------------------------------------------- authorizer


@lru_cache(maxsize=1)
def authorizer_repository() -> MailRepository:
    return MailRepository(get_settings(AuthorizerSettings).table_name)


# --------------------------------------------------------------------------------------------- sender


@lru_cache(maxsize=1)
def smtp_connections() -> ConnectionCache:
    """The sender's SMTP connections: they stay open across warm invocations."""
    from mail_proxy.mail.smtp_pool import ConnectionCache

    return ConnectionCache()


@lru_cache(maxsize=1)
def _attachment_cache() -> ContentCache:
    from mail_proxy.usecases.attachments import ContentCache

    return ContentCache()


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    from mail_proxy.adapters.blob_store import BlobStore
    from mail_proxy.adapters.payload_store import PayloadStore
    from mail_proxy.adapters.send_queue import SendQueue
    from mail_proxy.domain.rate_limits import RetryPolicy
    from mail_proxy.usecases.attachments import AttachmentFetcher
    from mail_proxy.usecases.delivery import DeliveryConfig, Dispatcher
    from mail_proxy.usecases.message_content import MessageContent

    settings = get_settings(SenderSettings)
    config = DeliveryConfig(retry=RetryPolicy.parse(settings.retry_delays), smtp_timeout=settings.smtp_timeout,
                            ca_file=settings.smtp_ca_file, address_policy=settings.relay_address_policy())
    blobs = BlobStore(settings.attachment_bucket)
    fetcher = AttachmentFetcher(blobs, allow_loopback=settings.allow_loopback, cache=_attachment_cache())
    content = MessageContent(PayloadStore(blobs, settings.payload_inline_max_bytes), fetcher,
                             public_url=settings.public_api_url)
    return Dispatcher(MailRepository(settings.table_name), SendQueue(settings.send_queue_urls), smtp_connections(),
                      config, content)


# --------------------------------------------------------------------------------------------- scheduler


@lru_cache(maxsize=1)
def scheduler_parts() -> tuple[MailRepository, SendQueue, ReportQueue]:
    from mail_proxy.adapters.report_queue import ReportQueue
    from mail_proxy.adapters.send_queue import SendQueue

    settings = get_settings(SchedulerSettings)
    return (MailRepository(settings.table_name), SendQueue(settings.send_queue_urls),
            ReportQueue(settings.report_queue_url, None))


# --------------------------------------------------------------------------------------------- reports


@lru_cache(maxsize=1)
def report_router_parts() -> tuple[MailRepository, ReportQueue, BlobStore]:
    from mail_proxy.adapters.blob_store import BlobStore
    from mail_proxy.adapters.report_queue import ReportQueue

    settings = get_settings(ReportRouterSettings)
    return (MailRepository(settings.table_name), ReportQueue(settings.report_queue_url, None),
            BlobStore(settings.attachment_bucket))


@lru_cache(maxsize=1)
def reporter_parts() -> tuple[ReportDelivery, ReportQueue]:
    from mail_proxy.adapters.report_queue import ReportQueue
    from mail_proxy.usecases.reporting import ReportDelivery, parse_backoff

    settings = get_settings(ReporterSettings)
    queue = ReportQueue(settings.report_queue_url, settings.report_parked_queue_url)
    delivery = ReportDelivery(MailRepository(settings.table_name), queue, allow_loopback=settings.allow_loopback,
                              backoff_seconds=parse_backoff(settings.report_backoff))
    return delivery, queue


# --------------------------------------------------------------------------------------------- bounce poller


@lru_cache(maxsize=1)
def mailbox_poller() -> MailboxPoller:
    from mail_proxy.usecases.bounce_polling import MailboxPoller, PollConfig

    settings = get_settings(BouncePollerSettings)
    config = PollConfig(imap_timeout=settings.imap_timeout, ca_file=settings.imap_ca_file,
                        pec_acceptance_timeout=settings.pec_acceptance_timeout,
                        suppression_days=settings.suppression_days, address_policy=settings.relay_address_policy())
    return MailboxPoller(MailRepository(settings.table_name), config)
