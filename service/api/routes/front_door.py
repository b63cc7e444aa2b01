"""The one path from a request to a run, for every route that runs a message
(POST /api/process and POST /v1/chat/completions). The two differ only in how their body is
read into a `RunRequest` and how the run's events are written (`present`); the rest is here
and in launch/message.py.

    raw = await json_body()
    loaded, name, ensemble = pick_ensemble(resources, body.ensemble, unknown=...)
    launched = await launch(resources, current_principal(), RunRequest(...))
    return event_stream_response(resources, launched, present=chunks.present)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from quart import Response, request

from ...ensemble import Ensemble, LoadedEnsembles, UnknownEnsemble
from ...errors import ServiceError, UnsupportedMediaType
from ...launch import Launched
from ...resources import Resources
from ...runs.live import FrameSource
from ..access import caller_address, current_principal
from ..contract.validation import header_safe
from ..writers.event_stream import EventStreamBody, Presenter
from ..writers.sse import HEADERS, frame

log = logging.getLogger(__name__)


async def json_body() -> bytes:
    """The request's body, which must be JSON (415 otherwise)."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(field="Content-Type")
    raw = await request.get_data(as_text=False)
    assert isinstance(raw, bytes)
    return raw


def trace_headers() -> dict[str, str]:
    """The request's headers, lower-cased, for the trace context a caller may send."""
    return {name.lower(): value for name, value in request.headers.items()}


def pick_ensemble(
    resources: Resources,
    name: str | None,
    *,
    unknown: Callable[[UnknownEnsemble], ServiceError],
) -> tuple[LoadedEnsembles, str, Ensemble]:
    """The ensembles as loaded now (pinned: a reload while the request runs changes nothing
    for it), and the one named (None: the default); `unknown` says how the route refuses a
    name it does not know."""
    loaded = resources.ensembles.current
    try:
        picked, ensemble = loaded.pick(name)
    except UnknownEnsemble as exc:
        raise unknown(exc) from exc
    return loaded, picked, ensemble


def event_stream_response(
    resources: Resources, launched: Launched, *, present: Presenter = frame
) -> Response:
    """The run's events as a text/event-stream response, each written by `present` (our
    SSE frame, or OpenAI's chunks), under the request's deadline."""
    settings = resources.settings
    body = EventStreamBody(
        launched.source,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        present=present,
        drive=launched.drive,
    )
    return sse_response(body, launched.headers)


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The last guard before a value reaches a header: the ids in them are checked at the
    edge, but a row stored before that rule may hold anything (a CR, LF or NUL there was a
    500 after the message was stored, or an injected header). Such a header is left out."""
    safe = {}
    for name, value in headers.items():
        if header_safe(value):
            safe[name] = value
        else:
            log.warning("%s not sent: its value is not printable ASCII", name)
    return safe


def sse_response(body: EventStreamBody, headers: Mapping[str, str]) -> Response:
    response = Response(
        body,
        status=200,
        headers={**HEADERS, **safe_headers(headers)},
        content_type="text/event-stream",
    )
    # Quart would cut the stream at RESPONSE_TIMEOUT; the run keeps its own deadline.
    response.timeout = None
    return response


async def slot_holding_stream(resources: Resources, source: FrameSource, after: int) -> Response:
    """An event stream that runs nothing (a resume, an evaluation's progress), from the
    event after `after`: it holds one of the caller's `concurrent_streams` slots while it
    is open, given back when it ends or its client leaves (RateLimited when all are taken)."""
    held = None
    if resources.limiter is not None:
        held = await resources.limiter.admit_stream(
            current_principal(), caller_address(), anonymous=resources.authenticator.anonymous
        )
    settings = resources.settings
    body = EventStreamBody(
        source,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        after=after,
        drive=held.hold if held is not None else None,
    )
    return sse_response(body, held.headers if held is not None else {})
