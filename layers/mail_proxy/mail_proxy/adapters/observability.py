"""Logger, tracer and metrics shared by every function (Powertools), configured from POWERTOOLS_* variables.

``GMP_LOG_LEVEL`` (genro-mail-proxy's variable) sets the level when POWERTOOLS_LOG_LEVEL does not.

Metrics are CloudWatch embedded metric format lines in one fixed namespace (POWERTOOLS_METRICS_NAMESPACE,
``MailProxy``) with low-cardinality dimensions only: ``service`` and ``stage`` on every metric, plus
``reason_class`` (the fixed :class:`FailureClass` set) on the per-class copy of ``MessagesFailed``. A tenant
id or a message id is never a dimension, because every distinct value would be a new, billed CloudWatch
metric; they go in log lines (Logs Insights finds them) and trace annotations.

Log lines never carry a message body, a password, a token or a token hash; trace annotations carry ids only,
and every handler is traced with ``capture_response=False`` so no answer (bodies, API keys) reaches X-Ray.

The layer ships without the X-Ray SDK (docs/layer.md): importing it builds a recorder whose sampler creates
an X-Ray client (a second botocore session) at every cold start, and pip brings a botocore along with it.
Lambda's active tracing still records each invocation. Without the SDK, or outside Lambda, the tracer is
Powertools' own ``Tracer`` over a provider that records nothing, so every ``@tracer.capture_*`` and
``put_annotation`` stays valid. A layer built with the SDK (``aws-lambda-powertools[tracer]`` in
requirements.txt) gets the X-Ray tracer again, with subsegments and annotations, and no code changes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-proxy")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MailProxy")
STAGE = os.environ.get("STAGE", "dev")

logger = Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("GMP_LOG_LEVEL")
                or "INFO")


class _Unrecorded(BaseSegment):
    """A subsegment nobody records: what the tracer hands out when the X-Ray SDK is absent."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoXRayProvider(BaseProvider):
    """Powertools' tracing provider interface, recording nothing (no X-Ray SDK in the layer)."""

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Unrecorded()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Unrecorded()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def make_tracer() -> Tracer:
    """Powertools' Tracer: on the X-Ray SDK when it can be imported and tracing is on, else on
    :class:`NoXRayProvider`.

    Tracing is off outside Lambda (tests, the local stack) and with POWERTOOLS_TRACE_DISABLED, by Powertools'
    own rule; there the SDK is not even imported, as its import alone builds an X-Ray client. The no-op
    tracer must not be "disabled": Powertools disables a tracer through the SDK itself.
    """
    if importlib.util.find_spec("aws_xray_sdk") is not None and not Tracer._is_tracer_disabled():
        return Tracer(service=SERVICE)
    return Tracer(service=SERVICE, disabled=False, auto_patch=False, provider=NoXRayProvider())


tracer = make_tracer()
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
