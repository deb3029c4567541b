"""Log lines that Cloud Logging reads as fields.

On Cloud Run and App Engine, a line written to stdout or stderr that is one JSON object
becomes a structured entry: ``severity``, ``message``, ``time`` and the
``logging.googleapis.com/*`` keys fill the entry's own fields, everything else lands in
``jsonPayload``. The receiver logs one line per delivery with the task's fields as
``extra`` (see ``RECEIVER_LOGGER``), so a query such as
``jsonPayload.outcome="failed" AND jsonPayload.func="reports.build"`` finds them.

Use it in ``LOGGING``::

    "formatters": {"cloud": {"()": "django_q_cloudtasks.cloud_logging.CloudLoggingFormatter"}},
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# The receiver's line per delivered task; a child of the package's logger.
RECEIVER_LOGGER = "django_q_cloudtasks.receiver"
TRACE_FIELD = "logging.googleapis.com/trace"

# Python levels as Cloud Logging's LogSeverity names.
SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
# Attributes every LogRecord has: what is left over came in through ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record: message, severity, time, logger, and every ``extra`` field.

    An exception's traceback is appended to the message, where Error Reporting looks
    for it. Values JSON cannot hold are written as their ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelno, "DEFAULT"),
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        )
        return json.dumps(entry, default=str)


def trace_of(header: str | None, project: str) -> dict[str, str]:
    """The ``extra`` that ties a line to its request's trace, from ``X-Cloud-Trace-Context``
    (``TRACE_ID/SPAN_ID;o=1``): Cloud Logging then shows it under that request."""
    trace_id = (header or "").split("/", 1)[0]
    if not trace_id or not trace_id.isalnum():
        return {}
    return {TRACE_FIELD: f"projects/{project}/traces/{trace_id}"}


def log_somewhere_by_default() -> None:
    """Send the package's lines (INFO and up) to stderr when the project's ``LOGGING`` gives
    neither its logger nor the root logger a handler, as django-q does for its own: Python
    would otherwise show warnings alone, and the receiver's line per task not at all."""
    package_logger = logging.getLogger(RECEIVER_LOGGER.rpartition(".")[0])
    if package_logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)
