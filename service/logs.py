"""Log setup: readable lines for people, one JSON object per line in production.

configure_logging(level="info", production=True)
log.info("agent failed", extra={"message_id": "m-1", "agent": "llm-2"})
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from opentelemetry import trace

from .telemetry.request import CURRENT_REQUEST

# Fields the service attaches with `extra=`; they are shown whenever a record has them.
CONTEXT_FIELDS = (
    "request_id",
    "user",
    "tenant",
    "trace_id",
    "message_id",
    "conversation_id",
    "agent",
    "ensemble_version",
)
# Access-log fields, shown in JSON lines (the text line already says them).
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "outcome", "disconnected")


class RequestContext(logging.Filter):
    """Adds the request id, the caller's user and tenant, and the trace id of whatever
    request the logging task serves."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = CURRENT_REQUEST.get()
        if request is not None:
            if not hasattr(record, "request_id"):
                record.request_id = request.request_id
            for name in ("user", "tenant"):
                if getattr(record, name, None) is None and getattr(request, name):
                    setattr(record, name, getattr(request, name))
        for name in ("user", "tenant"):
            if getattr(record, name, "") is None:
                delattr(record, name)
        if getattr(record, "trace_id", None) is None:
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = format(span_context.trace_id, "032x")
            elif hasattr(record, "trace_id"):
                del record.trace_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, *ACCESS_FIELDS):
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


# Characters that would end a log line or steer a terminal, in text a client chose.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(value: object) -> str:
    """`str(value)` with each control character written as its escape: `\\n`, `\\x1b`."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(value))


class TextFormatter(logging.Formatter):
    """One line per record, whatever its values hold: a message id with a newline in it
    cannot write a line of its own. A traceback follows on lines that start with `  | `."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(
            f"{name}={escape_controls(getattr(record, name))}"
            for name in CONTEXT_FIELDS
            if hasattr(record, name)
        )
        return f"{line} [{context}]" if context else line

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            text += "".join(f"\n  | {line}" for line in detail.splitlines())
        return text


def configure_logging(*, level: str, production: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    handler.addFilter(RequestContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The SDK's HTTP clients log every request at info; that is noise beside our own lines.
    for name in ("httpx2", "httpcore2", "openai"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Alembic says "Context impl ..." each time a migration context is made (three per
    # start) and a line per step; storage/migrate.py logs one line for what a start migrated.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
