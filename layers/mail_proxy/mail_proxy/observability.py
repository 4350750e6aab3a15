"""Logger, tracer and metrics shared by every function (Powertools), configured from POWERTOOLS_* variables.

``GMP_LOG_LEVEL`` (genro-mail-proxy's variable) sets the level when POWERTOOLS_LOG_LEVEL does not.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-proxy")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MailProxy")

logger = Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("GMP_LOG_LEVEL")
                or "INFO")
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
