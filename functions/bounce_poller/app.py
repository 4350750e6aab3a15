"""Bounce poller function (every 2 minutes): each tenant's bounce mailbox and PEC mailboxes → message events.

Reads new mail over IMAP from where the last poll stopped, records bounces (status ``bounced``, suppression
of hard-bounced addresses) and PEC receipts as events that reach the application in its delivery report,
and marks PEC messages without acceptance in time with ``pec_timeout``. A mailbox that fails is logged and
counted (``MailboxPollFailed``); the others are polled all the same.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mail_proxy.wiring import logger, metrics, tracer
from mail_proxy.wiring import mailbox_poller as poller


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    mailboxes = poller()
    report = mailboxes.run(mailboxes.repo.list_tenants(), context.get_remaining_time_in_millis)
    logger.info("mailboxes polled", extra=report.__dict__)
    return dict(report.__dict__)
