"""Logger, tracer and metrics shared by every function (Powertools), configured from POWERTOOLS_* variables.

``GMP_LOG_LEVEL`` (genro-mail-proxy's variable) sets the level when POWERTOOLS_LOG_LEVEL does not.

Metrics are CloudWatch embedded metric format lines in one fixed namespace (POWERTOOLS_METRICS_NAMESPACE,
``MailProxy``) with low-cardinality dimensions only: ``service`` and ``stage`` on every metric, plus
``reason_class`` (the fixed :class:`FailureClass` set) on the per-class copy of ``MessagesFailed``. A tenant
id or a message id is never a dimension, because every distinct value would be a new, billed CloudWatch
metric; they go in log lines (Logs Insights finds them) and trace annotations.

Log lines never carry a message body, a password, a token or a token hash; trace annotations carry ids only,
and every handler is traced with ``capture_response=False`` so no answer (bodies, API keys) reaches X-Ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-proxy")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MailProxy")
STAGE = os.environ.get("STAGE", "dev")

logger = Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("GMP_LOG_LEVEL")
                or "INFO")
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# one namespace serves every stage deployed in an account: the stage keeps dev and prod apart on the dashboard
metrics.set_default_dimensions(stage=STAGE)


class FailureClass(StrEnum):
    """Why a message ended in ``error`` at the sender: the ``reason_class`` dimension of MessagesFailed.

    A fixed, small set so the dashboard can name every class; the message's ``error`` field and the
    sender's log line carry the detail.
    """

    SMTP_PERMANENT = "smtp_permanent"  # 5xx reply, authentication or TLS failure, every recipient refused
    RETRIES_EXHAUSTED = "retries_exhausted"  # temporary failures until the last retry delay
    RATE_LIMIT = "rate_limit"  # over an account limit whose limit_behavior is reject
    MALFORMED = "malformed"  # the stored message cannot become a valid e-mail
    ACCOUNT_MISSING = "account_missing"  # the SMTP account was deleted after the message was accepted
    CONTENT_MISSING = "content_missing"  # the stored message content is gone
    ATTACHMENT = "attachment"  # an attachment cannot be fetched, for good
    SUPPRESSED = "suppressed"  # every recipient is on the tenant's suppression list
    OUTCOME_UNKNOWN = "outcome_unknown"  # the sender died during the SMTP transaction: not sent again
    OTHER = "other"  # anything not classified above (read the sender's log)


def count_failures_by_class(counts: Mapping[FailureClass, int]) -> None:
    """MessagesFailed once more per reason class, each with its own dimension set.

    EMF gives every metric of one blob the same dimensions, so the extra ``reason_class`` dimension goes in
    a blob of its own (Powertools' ``single_metric``). The total without ``reason_class`` stays in the
    function's metric set: that is the series the error-rate alarm reads.
    """
    if is_metrics_disabled():
        return
    for reason_class, count in counts.items():
        if count:
            with single_metric(name="MessagesFailed", unit=MetricUnit.Count, value=count, namespace=NAMESPACE,
                               default_dimensions={"service": SERVICE, "stage": STAGE}) as metric:
                metric.add_dimension(name="reason_class", value=str(reason_class))


def id_list(ids: Iterable[str]) -> str:
    """Message ids as one log field, separated by spaces (an id never contains one).

    A line about many messages stays one line, and Logs Insights still finds a message in it with
    ``message_ids like /(^| )<id>( |$)/`` (the saved "message life" query does).
    """
    return " ".join(ids)
