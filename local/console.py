"""What `make run` writes to the terminal: quiet by default, everything with `--verbose`.

Quiet (the default) is one line per HTTP request (`12:00:01 POST /tenant 201 84ms`), one line per message the
SMTP sink receives and per delivery report the stand-in application receives, and the handlers' warnings
and errors, each as one line (`12:00:07 WARNING Reporter: report not acknowledged; retrying later
(tenant_id=acme reason=...)`). The background work that found nothing to do (scheduler ticks, mailbox polls)
says nothing. A traceback appears only for a real fault: a handler's unexpected exception, a crash of the api
function. `--verbose` shows the handlers' INFO lines as the JSON Lambda writes to CloudWatch, and the
stack's own details. `MAIL_PROXY_LOCAL_LOG_LEVEL` sets the level of everything instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from typing import Any

from local.lambdas import running_function

HANDLER_LOGGER = "mail-proxy"
"""The Powertools logger every function shares (POWERTOOLS_SERVICE_NAME's default in the layer)."""

QUIET_LOCAL_LEVEL = logging.INFO
"""The stack's own loggers (`local.*`) in quiet mode: request lines, received mail and reports, problems."""

_NOISY = ("mail.log", "botocore", "boto3", "urllib3", "werkzeug")
"""Libraries that would write a line per SMTP command or AWS call."""

_CONTEXT_KEYS = frozenset({
    "level", "location", "message", "timestamp", "service", "cold_start", "function_name",
    "function_memory_size", "function_arn", "function_request_id", "correlation_id", "xray_trace_id",
    "sqs_message_id", "exception", "exception_name", "exception_notes", "stack_trace", "audit",
})
"""Fields every handler line carries that say nothing in a terminal (the function's name is shown instead)."""

_MAX_VALUE_CHARS = 160


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message` for the stack's INFO lines, `HH:MM:SS LEVEL name: message` for anything else."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, self.datefmt)
        text = record.getMessage()
        if record.levelno == logging.INFO and record.name.startswith("local."):
            line = f"{stamp} {text}"
        else:
            line = f"{stamp} {record.levelname} {record.name}: {text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _short_function(name: str | None) -> str:
    """`ReporterFunction` or `local-ReporterFunction` → `Reporter`."""
    if not name:
        return "function"
    name = name.rsplit("-", 1)[-1]
    return name[: -len("Function")] if name.endswith("Function") and len(name) > len("Function") else name


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 1] + "…"
    return text if text and " " not in text and "=" not in text else json.dumps(text, ensure_ascii=False)


def handler_line(log: dict[str, Any]) -> str:
    """One terminal line for a Powertools log entry (the dict it would serialise as JSON).

    The fields particular to the entry follow the message as `key=value`; a traceback (only ever attached by
    `logger.exception`, i.e. an unexpected error) follows on the next lines.
    """
    function = _short_function(running_function() or log.get("function_name"))
    extras = " ".join(f"{key}={_value(value)}" for key, value in log.items()
                      if key not in _CONTEXT_KEYS and value not in (None, "", [], {}))
    line = f"{time.strftime('%H:%M:%S')} {log.get('level', 'INFO')} {function}: {log.get('message', '')}"
    if extras:
        line += f" ({extras})"
    if log.get("exception"):
        line += "\n" + str(log["exception"]).rstrip()
    return line


def configure(verbose: bool, level: str | None = None) -> None:
    """Sets up the stack's own logging before anything starts (stderr, one line per record)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    if level:
        root.setLevel(level.upper())
        logging.getLogger("local").setLevel(level.upper())
    elif verbose:
        root.setLevel(logging.INFO)
        logging.getLogger("local").setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
        logging.getLogger("local").setLevel(QUIET_LOCAL_LEVEL)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # Powertools says so at every invocation that adds no metric; metrics are off locally anyway
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def quiet_handler_logs(verbose: bool, level: str | None = None) -> None:
    """Once the functions are imported: their shared Powertools logger at WARNING, one line per entry.

    With `--verbose` (or a level given) it is left as the template configures it, JSON lines included, so
    what the terminal shows is what CloudWatch would hold.
    """
    logger = logging.getLogger(HANDLER_LOGGER)
    if level:
        logger.setLevel(level.upper())
        return
    if verbose:
        return
    logger.setLevel(logging.WARNING)
    for handler in logger.handlers:
        formatter = handler.formatter
        if formatter is not None and hasattr(formatter, "json_serializer"):
            formatter.json_serializer = handler_line
