"""The event streams: POST /api/process runs a message (or, for a message id already sent,
replays or joins it; see launch.py), and GET /api/messages/{message_id}/events resumes one.
"""

from __future__ import annotations

import logging
import re

from quart import Blueprint, Response, current_app, request

from ...ensemble import UnknownEnsemble
from ...errors import (
    EnsembleNotFound,
    InvalidRequest,
    NotFound,
    NotRunningHere,
)
from ...event_ids import MAX_EVENT_ID
from ...launch import RunRequest, StoredFrames, elsewhere, launch, set_outcome
from ...resources import Resources
from ...runs.live import FrameSource
from ...storage import (
    FINISHED,
)
from ..access import caller_address, current_principal, requires
from ..contract.document import documented, event_stream, link, returns
from ..contract.process_request import ProcessBody, parse_process_request
from ..contract.schemas import Cancelling, EventsQuery, read_query, respond
from ..contract.validation import checked_id
from .conversations import store
from .front_door import (
    event_stream_response,
    json_body,
    pick_ensemble,
    slot_holding_stream,
    trace_headers,
)

log = logging.getLogger(__name__)

streams = Blueprint("streams", __name__)


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


# What a client can do with a message it sent (the fuzzer follows these too).
_SENT = "$request.body#/message_id"
_NEXT = {
    "GetMessage": link("conversations_get_message", "The stored message", message_id=_SENT),
    "ResumeMessage": link("streams_resume", "Its events again", message_id=_SENT),
    "CancelMessage": link("streams_cancel", "Stop it", message_id=_SENT),
    "GetConversation": link(
        "conversations_get_conversation",
        "Its conversation",
        conversation_id="$response.header.X-Conversation-Id",
    ),
    "DeleteConversation": link(
        "conversations_delete_conversation",
        "Delete its conversation",
        conversation_id="$response.header.X-Conversation-Id",
    ),
}
_STREAM_HEADERS = {
    "X-Conversation-Id": "The message's conversation (with storage on)",
    "X-Trace-Id": "The trace of this request, to find it in a tracing backend",
    "X-Replayed": "`true` when a finished message's stored stream is sent again",
    "X-Message-Version": "Which version of its `message_id` this is (with storage on)",
    "RateLimit": "With rate limits on: the remaining quota",
    "RateLimit-Policy": "With rate limits on: the limits that apply",
}


@streams.post("/api/process")
@requires("process")
@documented(
    "Ask every agent of an ensemble at once; the events stream back as they happen",
    tag="streams",
    description=(
        "The same `message_id` and `message` again replays a finished message's stream or "
        "joins a running one. Another `message` under the id is its next version: it runs, "
        "in a conversation of its own, or, with the `conversation_id` it was in, as an edit "
        "that branches the conversation there. `regenerate` runs the stored message again as "
        "its next version. The id names its newest version from then on. A hang-up cancels "
        'every upstream call, unless `on_disconnect` is `"continue"`.'
    ),
    body=ProcessBody,
    replies={200: event_stream("StreamEvent", "The run's events", _NEXT, **_STREAM_HEADERS)},
    errors=(404, 503),
)
async def process() -> Response:
    resources = _resources()
    settings = resources.settings
    parsed = parse_process_request(await json_body(), max_message_chars=settings.max_message_chars)
    continues = parsed.on_disconnect == "continue"
    if continues and resources.store is None:
        raise InvalidRequest(
            'on_disconnect: "continue" needs a database to resume from (DATABASE_URL=none)',
            field="on_disconnect",
        )
    if parsed.regenerate and resources.store is None:
        raise InvalidRequest(
            "regenerate: needs a database that holds the message (DATABASE_URL=none)",
            field="regenerate",
        )
    if parsed.parent is not None and resources.store is None:
        raise InvalidRequest(
            "parent: needs a database that holds the conversation (DATABASE_URL=none)",
            field="parent",
        )
    pipeline_request = parsed.pipeline
    loaded, ensemble_name, ensemble = pick_ensemble(
        resources, pipeline_request.ensemble, unknown=_no_such_ensemble
    )
    launched = await launch(
        resources,
        current_principal(),
        RunRequest(
            pipeline=pipeline_request,
            ensemble_name=ensemble_name,
            ensemble=ensemble,
            loaded=loaded,
            route="/api/process",
            trace_headers=trace_headers(),
            client_address=caller_address(),
            continues=continues,
            regenerate=parsed.regenerate,
            parent=parsed.parent,
            stream_agents=parsed.stream_agents,
        ),
    )
    return event_stream_response(resources, launched)


def _no_such_ensemble(exc: UnknownEnsemble) -> EnsembleNotFound:
    known = ", ".join(exc.known)
    return EnsembleNotFound(
        f"ensemble: no ensemble named {exc.name!r} (one of: {known})", field="ensemble"
    )


# An event id, or empty: EventSource sends an empty one when the last event reset it.
LAST_EVENT_ID = re.compile(f"^[0-9]{{0,{len(str(MAX_EVENT_ID))}}}$")


def _last_event_id() -> int:
    # The query is read even when the header wins: a bad one is a 400, never passed over.
    from_query = read_query(EventsQuery).last_event_id
    given = request.headers.get("Last-Event-ID")
    if not given:
        return from_query
    if not LAST_EVENT_ID.match(given):
        raise InvalidRequest(
            "Last-Event-ID: must be a whole number, an event id", field="Last-Event-ID"
        )
    return int(given)


@streams.get("/api/messages/<message_id>/events")
@requires("process")
@documented(
    "Resume a message's stream: the events after `Last-Event-ID`, then the run to its end",
    tag="streams",
    query=EventsQuery,
    headers={
        "Last-Event-ID": (
            "The id of the last event you have (EventSource sends it)",
            {"type": "string", "pattern": LAST_EVENT_ID.pattern},
        )
    },
    replies={
        200: event_stream(
            "StreamEvent",
            "The events after the one given",
            None,
            **{name: _STREAM_HEADERS[name] for name in ("RateLimit", "RateLimit-Policy")},
        )
    },
    errors=(400, 404, 503),
)
async def resume(message_id: str) -> Response:
    """The message's events after `Last-Event-ID`, then the live run until its end. It
    holds one of the caller's `concurrent_streams` slots while it streams."""
    resources = _resources()
    checked_id(message_id, "message_id")
    after = _last_event_id()
    principal = current_principal()
    # The id names its newest version; that one is followed to its end, even if a newer
    # one is sent meanwhile.
    version = await store().newest_version(principal, message_id)
    if version is None:
        raise NotFound("no such message")
    source: FrameSource | None = resources.live.get(principal, message_id, version)
    if source is None:
        found = await store().events_after(principal, message_id, after, version=version)
        if found is None:
            raise NotFound("no such message")
        status, _ = found
        source = (
            StoredFrames(store(), principal, message_id, version)
            if status in FINISHED
            else elsewhere(resources, principal, message_id, version)
        )
    # The slot is held while the body streams, freed when it ends or the client leaves.
    response = await slot_holding_stream(resources, source, after)
    set_outcome("resumed")
    return response


@streams.post("/api/messages/<message_id>/cancel")
@requires("process")
@documented(
    "Stop a running message: every upstream call is closed, it is kept as `cancelled`",
    tag="streams",
    replies={202: returns(Cancelling, "Cancelling: the stream ends with `cancelled`")},
    errors=(400, 404, 409, 503),
)
async def cancel(message_id: str) -> tuple[dict[str, str], int]:
    """Stop a running message (one started with `on_disconnect: "continue"`, say): it ends
    with `cancelled`, and every upstream call made for it is closed."""
    resources = _resources()
    checked_id(message_id, "message_id")
    principal = current_principal()
    version = await store().newest_version(principal, message_id)
    if version is None:
        raise NotFound("no such message")
    if resources.live.cancel(principal, message_id, version):
        return respond(Cancelling(status="cancelling")), 202
    raise NotRunningHere()
