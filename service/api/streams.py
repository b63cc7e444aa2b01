"""The event streams: POST /api/process runs a message (or, for a message id already sent,
replays or joins it), and GET /api/messages/{message_id}/events resumes one.

A new message is stored as `running` before it runs, which is what makes a `message_id`
idempotent: the same caller sending it again gets the stored stream replayed (finished),
the live one joined (running here) or followed through the database (running elsewhere),
and never a second run; with a different message it gets 409.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial

import trio
from opentelemetry.trace import Span, SpanKind
from quart import Blueprint, Response, current_app, request

from ..auth import Principal
from ..client_address import client_address
from ..ensemble import Ensemble, LoadedEnsembles, UnknownEnsemble
from ..errors import (
    InvalidRequest,
    MessageIdConflict,
    NotFound,
    ShuttingDown,
    UnsupportedMediaType,
)
from ..limits import Admission, Settlement
from ..llm.pool import REQUEST_CALLS
from ..pipeline import PipelineRequest, RunContext, Turn, run_pipeline
from ..resources import Resources
from ..runs import LiveRun, RunDriver
from ..storage import (
    FINISHED,
    ExistingMessage,
    HistoryTurn,
    MessageEnd,
    NewMessage,
    StorageUnavailable,
)
from ..storage.recorder import Recorder
from ..telemetry.access_log import CURRENT_REQUEST
from ..telemetry.stream import StreamTelemetry
from ..telemetry.tracing import context_from_headers, end_span, trace_id_of, tracer
from .access import current_principal, requires
from .conversations import checked_id, store
from .event_stream import EventStreamBody, FrameSource
from .process_request import ProcessRequest, parse_process_request
from .sse import HEADERS, SseEncoder, frame
from .stored_frames import RelayedFrames, StoredFrames

log = logging.getLogger(__name__)

streams = Blueprint("streams", __name__)

# The trace this request's spans belong to, for finding it in a tracing backend.
TRACE_ID_HEADER = "X-Trace-Id"
CONVERSATION_HEADER = "X-Conversation-Id"
REPLAYED_HEADER = "X-Replayed"


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


def _history(turns: tuple[HistoryTurn, ...]) -> tuple[Turn, ...]:
    return tuple(
        part
        for turn in turns
        for part in (Turn("user", turn.question), Turn("assistant", turn.summary))
    )


def _set_outcome(outcome: str) -> None:
    access = CURRENT_REQUEST.get()
    if access is not None:
        access.outcome = outcome


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
    if resources.lifecycle.draining:
        raise ShuttingDown()
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

    admission = await _admit(resources, principal, ensemble)
    try:
        return await _start(
            resources, principal, parsed, ensemble_name, ensemble, loaded, admission
        )
    except BaseException:
        if admission is not None:
            with trio.CancelScope(shield=True):
                await admission.settle(None)  # nothing ran: everything goes back
        raise


async def _admit(
    resources: Resources, principal: Principal, ensemble: Ensemble
) -> Admission | None:
    if resources.limiter is None:
        return None
    peer = request.remote_addr or "unknown"
    address = client_address(
        peer,
        forwarded=request.headers.get("Forwarded"),
        forwarded_for=request.headers.get("X-Forwarded-For"),
        trusted=resources.trusted_proxies,
    )
    return await resources.limiter.admit(
        principal,
        address,
        anonymous=resources.authenticator.anonymous,
        max_tokens=[member.max_tokens for member in ensemble.members],
    )


async def _start(
    resources: Resources,
    principal: Principal,
    parsed: ProcessRequest,
    ensemble_name: str,
    ensemble: Ensemble,
    loaded: LoadedEnsembles,
    admission: Admission | None,
) -> Response:
    settings = resources.settings
    pipeline_request = parsed.pipeline
    continues = parsed.on_disconnect == "continue"
    span = tracer.start_span(
        "POST /api/process",
        context=context_from_headers({k.lower(): v for k, v in request.headers.items()}),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/process",
            "fanout.message_id": pipeline_request.message_id,
            "fanout.ensemble": ensemble_name,
            "fanout.ensemble_version": loaded.version,
            # Who asked (ids only, never a key or token).
            "enduser.id": principal.user,
            "fanout.tenant": principal.tenant,
        },
    )
    trace_id = trace_id_of(span)
    access = CURRENT_REQUEST.get()
    if access is not None:
        access.trace_id = trace_id

    begun: NewMessage | ExistingMessage | None = None
    if resources.store is not None:
        try:
            begun = await resources.store.begin_message(
                principal,
                message_id=pipeline_request.message_id,
                conversation_id=pipeline_request.conversation_id,
                question=pipeline_request.message,
                ensemble=ensemble_name,
                ensemble_version=loaded.version,
                trace_id=trace_id,
                history_max_chars=settings.history_max_chars,
            )
        except StorageUnavailable:
            # Never a broken stream for a database that fails: this one runs unrecorded.
            log.error(
                "could not store the message; running it unrecorded",
                exc_info=True,
                extra={"message_id": pipeline_request.message_id},
            )
            if continues:
                end_span(span, "failed", "storage_unavailable")
                raise
    if isinstance(begun, ExistingMessage):
        end_span(span, "ok")
        if admission is not None:
            await admission.settle(None)  # a replay or a join runs nothing
        return _follow_existing(resources, principal, pipeline_request, begun, trace_id)

    try:
        return _run(resources, principal, parsed, ensemble, loaded.version, span, begun, admission)
    except BaseException:
        # Stored as running, never run: it must not stay `running`.
        if isinstance(begun, NewMessage) and resources.store is not None:
            with trio.CancelScope(shield=True):
                await resources.store.record(
                    begun.pk, end=MessageEnd("failed", None, "internal_error", {}, {}, None)
                )
            resources.live.remove(principal, pipeline_request.message_id)
        raise


def _run(
    resources: Resources,
    principal: Principal,
    parsed: ProcessRequest,
    ensemble: Ensemble,
    ensemble_version: str,
    span: Span,
    begun: NewMessage | None,
    admission: Admission | None,
) -> Response:
    settings = resources.settings
    pipeline_request: PipelineRequest = parsed.pipeline
    history: tuple[Turn, ...] = ()
    recorder: Recorder | None = None
    if begun is not None and resources.store is not None:
        pipeline_request = replace(pipeline_request, conversation_id=begun.conversation_id)
        history = _history(begun.history)
        recorder = Recorder(
            resources.store,
            begun.pk,
            principal=principal,
            primary_models={member.name: member.model or "" for member in ensemble.members},
        )

    telemetry = StreamTelemetry(
        span,
        primary_models={member.name: member.model or "" for member in ensemble.members},
        tenant=principal.tenant,
    )
    telemetry.access = CURRENT_REQUEST.get()
    trace_id = trace_id_of(span)
    log_context = {
        "message_id": pipeline_request.message_id,
        "ensemble_version": ensemble_version,
        "trace_id": trace_id,
    }
    conversation_id = pipeline_request.conversation_id
    if conversation_id is not None:
        log_context["conversation_id"] = conversation_id
    run = RunContext(
        request=pipeline_request,
        ensemble=ensemble,
        model=resources.model,
        request_timeout_s=settings.request_timeout_s,
        ensemble_version=ensemble_version,
        history=history,
    )
    encoder = SseEncoder(
        message_id=pipeline_request.message_id,
        conversation_id=conversation_id,
        with_charge=admission is not None,
    )
    # Kept whole while it runs when someone may join or resume it; else read once.
    live = LiveRun(retain=recorder is not None)
    on_end: Callable[[], None] | None = None
    if recorder is not None:
        resources.live.add(principal, pipeline_request.message_id, live)
        on_end = partial(resources.live.remove, principal, pipeline_request.message_id)
    driver = RunDriver(
        produce=partial(run_pipeline, run),
        live=live,
        encode=encoder.encode_parts,
        frame=frame,
        lifecycle=resources.lifecycle,
        log_context=log_context,
        telemetry=telemetry,
        recorder=recorder,
        settlement=Settlement(admission) if admission is not None else None,
        relay=(
            resources.relay.publisher(principal, pipeline_request.message_id)
            if resources.relay is not None and recorder is not None
            else None
        ),
        on_end=on_end,
    )
    headers = {TRACE_ID_HEADER: trace_id, **(admission.headers if admission else {})}
    if conversation_id is not None:
        headers[CONVERSATION_HEADER] = conversation_id
    if parsed.on_disconnect == "continue":
        if resources.runs is None:
            raise ShuttingDown()
        resources.runs.start_soon(_without_the_client(driver.run), name="run")
        body = EventStreamBody(
            live, keepalive_s=settings.sse_keepalive_s, deadline_s=settings.request_timeout_s
        )
    else:
        body = EventStreamBody(
            live,
            keepalive_s=settings.sse_keepalive_s,
            deadline_s=settings.request_timeout_s,
            drive=driver.run,
        )
    return sse_response(body, headers)


def _without_the_client(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def detached() -> None:
        # Started from the request's task, it would inherit the request's upstream calls,
        # whose sockets are closed the moment the client leaves: this run has its own.
        REQUEST_CALLS.set(None)
        await run()

    return detached


def _follow_existing(
    resources: Resources,
    principal: Principal,
    pipeline_request: PipelineRequest,
    existing: ExistingMessage,
    trace_id: str,
) -> Response:
    if existing.question != pipeline_request.message:
        raise MessageIdConflict(field="message_id")
    settings = resources.settings
    headers = {TRACE_ID_HEADER: trace_id, CONVERSATION_HEADER: existing.conversation_id}
    source: FrameSource | None = resources.live.get(principal, pipeline_request.message_id)
    if source is not None:
        _set_outcome("joined")
    elif existing.status in FINISHED:
        source = StoredFrames(store(), principal, pipeline_request.message_id)
        headers[REPLAYED_HEADER] = "true"
        _set_outcome("replayed")
    else:
        source = _elsewhere(resources, principal, pipeline_request.message_id)
        _set_outcome("followed")
    body = EventStreamBody(
        source, keepalive_s=settings.sse_keepalive_s, deadline_s=settings.request_timeout_s
    )
    return sse_response(body, headers)


def _elsewhere(resources: Resources, principal: Principal, message_id: str) -> FrameSource:
    """A run in progress on another instance: live through the relay, when there is one."""
    if resources.relay is not None:
        return RelayedFrames(store(), resources.relay, principal, message_id)
    return StoredFrames(store(), principal, message_id)


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
            else _elsewhere(resources, principal, message_id)
        )
    body = EventStreamBody(
        source,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        after=after,
    )
    _set_outcome("resumed")
    return sse_response(body, {})
