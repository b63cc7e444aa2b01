"""What is known about the request being served, filled in by whoever learns it while the
request runs (its id, who asked, how it ended), for its access line and every log line
written meanwhile. connections/access_log.py opens one per request.

    record = CURRENT_REQUEST.get()
    if record is not None:
        record.outcome = "cancelled"
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestRecord:
    """What the access line needs, filled in by whoever knows it while the request runs."""

    request_id: str
    outcome: str = ""
    trace_id: str = ""
    # Who asked, once identified (ids only: never a key or token).
    user: str = ""
    tenant: str = ""


CURRENT_REQUEST: ContextVar[RequestRecord | None] = ContextVar("current_request", default=None)
