"""Bounce poller function (every 2 minutes): each tenant's bounce mailbox and PEC mailboxes → message events.

Reads new mail over IMAP from where the last poll stopped, records bounces (status ``bounced``, suppression
of hard-bounced addresses) and PEC receipts as events that reach the application in its delivery report,
and marks PEC messages without acceptance in time with ``pec_timeout``. A mailbox that fails is logged and
counted (``MailboxPollFailed``); the others are polled all the same.
"""

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.adapters.observability import logger, metrics, tracer
from mail_proxy.adapters.repository import MailRepository
from mail_proxy.settings import BouncePollerSettings, get_settings
from mail_proxy.usecases.bounce_polling import MailboxPoller, PollConfig


@lru_cache(maxsize=1)
def poller() -> MailboxPoller:
    settings = get_settings(BouncePollerSettings)
    config = PollConfig(imap_timeout=settings.imap_timeout, ca_file=settings.imap_ca_file,
                        pec_acceptance_timeout=settings.pec_acceptance_timeout,
                        suppression_days=settings.suppression_days, address_policy=settings.relay_address_policy())
    return MailboxPoller(MailRepository(settings.table_name), config)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    mailboxes = poller()
    report = mailboxes.run(mailboxes.repo.list_tenants(), context.get_remaining_time_in_millis)
    logger.info("mailboxes polled", extra=report.__dict__)
    return dict(report.__dict__)
