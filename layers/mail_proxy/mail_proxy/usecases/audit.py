"""Audit trail: a structured log line for people and a command-log item for the API, never a secret."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger, metrics

SECRET_FIELDS = frozenset({"password", "token", "api_key", "client_auth", "imap_password", "signing_secret"})


def redact(value: Any) -> Any:
    """A copy of a payload fit for logs: secret fields masked, bodies and long lists summarised."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in SECRET_FIELDS and v is not None:
                out[k] = {"method": v.get("method")} if k == "client_auth" and isinstance(v, dict) else "***"
            elif k == "messages" and isinstance(v, list):
                out[k] = {"count": len(v), "ids": [m.get("id") for m in v[:50] if isinstance(m, dict)]}
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value[:100]]
    return value


def record(repo: MailRepository, *, command: str, tenant_id: str | None, payload: dict[str, Any],
           message: str, outcome: str = "ok", status: int = 200, **extra: Any) -> None:
    """Log the command and add it to the command log.

    Called after the command took effect, so a failure here must not turn a done command into an error
    answer (a client retrying it would then be told, e.g., that its messages were "already sent"): the
    log line above is the record, the failure is logged and counted (``AuditWriteFailed``).
    """
    logger.info(message, extra={"audit": True, "command": command, "tenant_id": tenant_id, **extra})
    try:
        repo.log_command(tenant_id, command, redact(payload), outcome, status)
    except Exception as exc:  # any storage failure: the command itself is done
        logger.error("command log write failed", extra={"command": command, "tenant_id": tenant_id,
                                                        "error": type(exc).__name__})
        metrics.add_metric(name="AuditWriteFailed", unit=MetricUnit.Count, value=1)
