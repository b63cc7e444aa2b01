"""The event streams: POST /api/process runs a message (or, for a message id already sent,
replays or joins it; see launch.py), and GET /api/messages/{message_id}/events resumes one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from quart import Blueprint, Response, current_app, request

from ..ensemble import UnknownEnsemble
from ..errors import (
    InvalidRequest,
    NotFound,
    NotRunningHere,
    UnsupportedMediaType,
)
from ..resources import Resources
from ..storage import (
    FINISHED,
)
from .access import current_principal, requires
from .conversations import checked_id, store
from .event_stream import EventStreamBody, FrameSource
from .launch import RunRequest, elsewhere, launch, set_outcome
from .process_request import ProcessRequest, parse_process_request
from .sse import HEADERS
from .stored_frames import StoredFrames

log = logging.getLogger(__name__)

streams = Blueprint("streams", __name__)


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


def sse_response(body: EventStreamBody, headers: Mapping[str, str]) -> Response:
    response = Response(
        body, status=200, headers={**HEADERS, **headers}, content_type="text/event-stream"
    )
    # Quart would cut the stream at RESPONSE_TIMEOUT; the run keeps its own deadline.
    response.timeout = None
    return response


async def _body(raw: bytes, max_message_chars: int) -> ProcessRequest:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(field="Content-Type")
    return parse_process_request(raw, max_message_chars=max_message_chars)


@streams.post("/api/process")
@requires("process")
async def process() -> Response:
    resources = _resources()
    settings = resources.settings
    raw = await request.get_data(as_text=False)
    assert isinstance(raw, bytes)
    parsed = await _body(raw, settings.max_message_chars)
    continues = parsed.on_disconnect == "continue"
    if continues and resources.store is None:
        raise InvalidRequest(
            'on_disconnect: "continue" needs a database to resume from (DATABASE_URL=none)',
            field="on_disconnect",
        )
    principal = current_principal()
    pipeline_request = parsed.pipeline

    # Pinned here: a reload while this request runs changes nothing for it.
    loaded = resources.ensembles.current
    try:
        ensemble_name, ensemble = loaded.pick(pipeline_request.ensemble)
    except UnknownEnsemble as exc:
        known = ", ".join(exc.known)
        raise InvalidRequest(
            f"ensemble: no ensemble named {exc.name!r} (one of: {known})", field="ensemble"
        ) from exc

    launched = await launch(
        resources,
        principal,
        RunRequest(
            pipeline=pipeline_request,
            ensemble_name=ensemble_name,
            ensemble=ensemble,
            loaded=loaded,
            route="/api/process",
            continues=continues,
        ),
    )
    body = EventStreamBody(
        launched.source,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        drive=launched.drive,
    )
    return sse_response(body, launched.headers)


def _last_event_id() -> int:
    given = request.headers.get("Last-Event-ID")
    field = "Last-Event-ID"
    if given is None:
        given = request.args.get("last_event_id", "0")
        field = "last_event_id"
    if not given.isdigit() or len(given) > 9:
        raise InvalidRequest(f"{field}: must be a whole number, an event id", field=field)
    return int(given)


@streams.get("/api/messages/<message_id>/events")
@requires("process")
async def resume(message_id: str) -> Response:
    """The message's events after `Last-Event-ID`, then the live run until its end."""
    resources = _resources()
    checked_id(message_id, "message_id")
    after = _last_event_id()
    principal = current_principal()
    settings = resources.settings
    source: FrameSource | None = resources.live.get(principal, message_id)
    if source is None:
        found = await store().events_after(principal, message_id, after)
        if found is None:
            raise NotFound("no such message")
        status, _ = found
        source = (
            StoredFrames(store(), principal, message_id)
            if status in FINISHED
            else elsewhere(resources, principal, message_id)
        )
    body = EventStreamBody(
        source,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        after=after,
    )
    set_outcome("resumed")
    return sse_response(body, {})


@streams.post("/api/messages/<message_id>/cancel")
@requires("process")
async def cancel(message_id: str) -> tuple[dict[str, str], int]:
    """Stop a running message (one started with `on_disconnect: "continue"`, say): it ends
    with `cancelled`, and every upstream call made for it is closed."""
    resources = _resources()
    checked_id(message_id, "message_id")
    principal = current_principal()
    if resources.live.cancel(principal, message_id):
        return {"status": "cancelling"}, 202
    found = await store().events_after(principal, message_id, 0)
    if found is None:
        raise NotFound("no such message")
    raise NotRunningHere()
