"""Starting a message, for every route that runs one (POST /api/process and the OpenAI
route): admission, its span, storing it, and then either running it or, for a message id
the caller already sent, following the run that has it (replay, join, or a run on another
instance). What comes back is where the client reads the run's events, in whatever format
the route presents them.

    launched = await launch(resources, principal, run_request)
    body = EventStreamBody(launched.source, ..., present=frame, drive=launched.drive)

A new message is stored as `running` before it runs, which is what makes a `message_id`
idempotent: the same caller sending the same message again gets the stored stream replayed
(finished), the live one joined (running here) or followed (running elsewhere), never a
second run. Other text under the id, an edit or a regenerate is the id's next version: it
runs, and the id names it from then on (storage/queries.py, `begin_message`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

import trio
from opentelemetry.trace import Span, SpanKind

from ..ensemble import Ensemble, LoadedEnsembles
from ..errors import NotFound, ShuttingDown, StorageDisabled
from ..limits import Admission, Settlement
from ..llm import calls_of_no_request
from ..pipeline import PipelineRequest, RunContext, Spend, Turn, run_pipeline
from ..pipeline.context import AgentStreaming
from ..principal import Principal
from ..resources import Resources
from ..runs import LiveRun, RunDriver
from ..runs.frames import FrameEncoder
from ..runs.live import FrameSource
from ..settings import Settings
from ..storage import (
    FINISHED,
    ExistingMessage,
    HistoryTurn,
    MessageEnd,
    MessageStart,
    NewMessage,
    StorageUnavailable,
    Store,
    UnknownMessage,
    UnknownParent,
)
from ..storage.recorder import Recorder
from ..telemetry.request import CURRENT_REQUEST
from ..telemetry.stream import StreamTelemetry
from ..telemetry.tracing import context_from_headers, end_span, trace_id_of, tracer
from .stored_frames import RelayedFrames, StoredFrames
from .unstarted import driven_by_the_response

log = logging.getLogger(__name__)

# The trace this request's spans belong to, for finding it in a tracing backend.
TRACE_ID_HEADER = "X-Trace-Id"
CONVERSATION_HEADER = "X-Conversation-Id"
REPLAYED_HEADER = "X-Replayed"
# Which version of its message id a stream is: 1, then one more for each message sent again
# under the id with other text, each edit and each regenerate.
VERSION_HEADER = "X-Message-Version"


@dataclass(frozen=True)
class RunRequest:
    """What a route asks to run: the message, the ensemble it picked (pinned: a reload
    while it runs changes nothing for it), and how."""

    pipeline: PipelineRequest
    ensemble_name: str
    ensemble: Ensemble
    loaded: LoadedEnsembles
    route: str
    # True: the run goes on when its client leaves (`on_disconnect: "continue"`).
    continues: bool = False
    # The earlier turns a client sent itself (OpenAI's messages): used instead of the
    # stored conversation's.
    history: tuple[Turn, ...] | None = None
    client_context: str | None = None
    summary_max_tokens: int | None = None
    # Run the stored message again as its next version (its text: the stored one).
    regenerate: bool = False
    # The turn a new message follows, (message_id, version); None: the conversation's newest.
    parent: tuple[str, int] | None = None
    # The request's headers, lower-cased, where a caller's trace context may be.
    trace_headers: Mapping[str, str] = field(default_factory=dict)
    # The client's address (a trusted proxy's FORWARDED_HEADER, else the peer), for limits.
    client_address: str = "unknown"
    # The agents' answers stream as `agent.delta` (None: as STREAM_AGENTS says).
    stream_agents: bool | None = None


@dataclass
class Launched:
    """Where the client reads the run's events, and the run itself when this response
    drives it (run it in the response's nursery)."""

    source: FrameSource
    drive: Callable[[], Awaitable[None]] | None
    headers: dict[str, str] = field(default_factory=dict)
    # "run", or, for a message id sent before, "joined", "replayed" or "followed".
    outcome: str = "run"


def set_outcome(outcome: str) -> None:
    access = CURRENT_REQUEST.get()
    if access is not None:
        access.outcome = outcome


def history_turns(turns: tuple[HistoryTurn, ...]) -> tuple[Turn, ...]:
    return tuple(
        part
        for turn in turns
        for part in (Turn("user", turn.question), Turn("assistant", turn.summary))
    )


async def launch(resources: Resources, principal: Principal, run: RunRequest) -> Launched:
    if resources.lifecycle.draining:
        raise ShuttingDown()
    admission = await _admit(resources, principal, run)
    try:
        return await _start(resources, principal, run, admission)
    except BaseException:
        if admission is not None:
            with trio.CancelScope(shield=True):
                await admission.settle(None)  # nothing ran: everything goes back
        raise


async def _admit(resources: Resources, principal: Principal, run: RunRequest) -> Admission | None:
    if resources.limiter is None:
        return None
    return await resources.limiter.admit(
        principal,
        run.client_address,
        anonymous=resources.authenticator.anonymous,
        # Every call of the strategy: a debate's agent answers once per round.
        max_tokens=run.ensemble.max_tokens_per_call(),
    )


async def _start(
    resources: Resources, principal: Principal, run: RunRequest, admission: Admission | None
) -> Launched:
    settings = resources.settings
    pipeline_request = run.pipeline
    span = tracer.start_span(
        f"POST {run.route}",
        context=context_from_headers(run.trace_headers),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": run.route,
            "fanout.message_id": pipeline_request.message_id,
            "fanout.ensemble": run.ensemble_name,
            "fanout.ensemble_version": run.loaded.version,
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
                MessageStart(
                    message_id=pipeline_request.message_id,
                    conversation_id=pipeline_request.conversation_id,
                    question=pipeline_request.message or None,
                    ensemble=run.ensemble_name,
                    ensemble_version=run.loaded.version,
                    trace_id=trace_id,
                    history_max_chars=settings.history_max_chars,
                    regenerate=run.regenerate,
                    parent=run.parent,
                ),
            )
        except UnknownParent as exc:
            end_span(span, "failed", "not_found")
            raise NotFound("parent: no such message in this conversation", field="parent") from exc
        except UnknownMessage as exc:
            end_span(span, "failed", "not_found")
            raise NotFound(
                "message_id: no message by this id to regenerate", field="message_id"
            ) from exc
        except StorageUnavailable:
            # Never a broken stream for a database that fails: this one runs unrecorded.
            log.error(
                "could not store the message; running it unrecorded",
                exc_info=True,
                extra={"message_id": pipeline_request.message_id},
            )
            if run.continues or run.regenerate:
                end_span(span, "failed", "storage_unavailable")
                raise
    if isinstance(begun, ExistingMessage):
        end_span(span, "ok")
        launched = _follow_existing(
            resources, principal, pipeline_request.message_id, begun, trace_id
        )
        if admission is not None:
            # A replay or a join runs nothing, but it is a stream: it holds its slot.
            await admission.keep_only_the_slot()
            launched.drive = admission.hold
        return launched

    try:
        return _run(resources, principal, run, span, begun, admission)
    except BaseException:
        # Stored as running, never run: it must not stay `running`.
        if isinstance(begun, NewMessage) and resources.store is not None:
            with trio.CancelScope(shield=True):
                await resources.store.record(
                    begun.pk, end=MessageEnd("failed", None, "internal_error", {}, {}, None)
                )
            resources.live.remove(principal, pipeline_request.message_id, begun.version)
        raise


def _run(
    resources: Resources,
    principal: Principal,
    run: RunRequest,
    span: Span,
    begun: NewMessage | None,
    admission: Admission | None,
) -> Launched:
    settings = resources.settings
    ensemble = run.ensemble
    pipeline_request = run.pipeline
    history: tuple[Turn, ...] = run.history or ()
    recorder: Recorder | None = None
    primary_models = {member.name: member.model or "" for member in ensemble.members}
    if begun is not None and resources.store is not None:
        # The stored text: a regenerate sends none.
        pipeline_request = replace(
            pipeline_request, conversation_id=begun.conversation_id, message=begun.question
        )
        if run.history is None:
            history = history_turns(begun.history)
        recorder = Recorder(
            resources.store, begun.pk, principal=principal, primary_models=primary_models
        )
    telemetry = StreamTelemetry(span, primary_models=primary_models, tenant=principal.tenant)
    telemetry.access = CURRENT_REQUEST.get()
    trace_id = trace_id_of(span)
    log_context = {
        "message_id": pipeline_request.message_id,
        "ensemble_version": run.loaded.version,
        "trace_id": trace_id,
    }
    conversation_id = pipeline_request.conversation_id
    if conversation_id is not None:
        log_context["conversation_id"] = conversation_id
    context = RunContext(
        request=pipeline_request,
        ensemble=ensemble,
        model=resources.model,
        request_timeout_s=settings.request_timeout_s,
        ensemble_version=run.loaded.version,
        history=history,
        client_context=run.client_context,
        summary_max_tokens=run.summary_max_tokens,
        agent_streaming=_agent_streaming(settings, run.stream_agents),
    )
    encoder = FrameEncoder(
        message_id=pipeline_request.message_id,
        conversation_id=conversation_id,
        with_charge=admission is not None,
    )
    # Kept whole while it runs when someone may join or resume it; else read once.
    live = LiveRun(retain=recorder is not None)
    on_end: Callable[[], None] | None = None
    if recorder is not None and begun is not None:
        on_end = partial(
            resources.live.remove, principal, pipeline_request.message_id, begun.version
        )
    spend = Spend(ensemble, free=context.free)
    driver = RunDriver(
        produce=partial(run_pipeline, context, spend=spend),
        live=live,
        encode=encoder.encode_parts,
        lifecycle=resources.lifecycle,
        log_context=log_context,
        telemetry=telemetry,
        recorder=recorder,
        settlement=Settlement(admission) if admission is not None else None,
        background=resources.runs,
        relay=(
            resources.relay.publisher(principal, pipeline_request.message_id, begun.version)
            if resources.relay is not None and recorder is not None and begun is not None
            else None
        ),
        on_end=on_end,
        spend=spend,
    )
    headers = {TRACE_ID_HEADER: trace_id, **(admission.headers if admission else {})}
    if recorder is not None and begun is not None:
        resources.live.add(
            principal, pipeline_request.message_id, begun.version, live, driver.cancel
        )
        headers[VERSION_HEADER] = str(begun.version)
    if conversation_id is not None:
        headers[CONVERSATION_HEADER] = conversation_id
    if run.continues:
        if resources.runs is None:
            raise ShuttingDown()
        resources.runs.start_soon(_without_the_client(driver.run), name="run")
        return Launched(live, None, headers)
    return Launched(live, driven_by_the_response(driver), headers)


def _agent_streaming(settings: Settings, asked: bool | None) -> AgentStreaming | None:
    if not (settings.stream_agents if asked is None else asked):
        return None
    return AgentStreaming(
        interval_s=settings.agent_delta_ms / 1000, max_chars=settings.agent_delta_max_chars
    )


def _without_the_client(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def detached() -> None:
        # Started from the request's task, it would inherit the request's upstream calls,
        # whose sockets are closed the moment the client leaves: this run has its own.
        calls_of_no_request()
        await run()

    return detached


def _follow_existing(
    resources: Resources,
    principal: Principal,
    message_id: str,
    existing: ExistingMessage,
    trace_id: str,
) -> Launched:
    """The same message sent again: its run joined, followed or replayed."""
    headers = {
        TRACE_ID_HEADER: trace_id,
        CONVERSATION_HEADER: existing.conversation_id,
        VERSION_HEADER: str(existing.version),
    }
    source: FrameSource | None = resources.live.get(principal, message_id, existing.version)
    if source is not None:
        outcome = "joined"
    elif existing.status in FINISHED:
        source = StoredFrames(_store(resources), principal, message_id, existing.version)
        headers[REPLAYED_HEADER] = "true"
        outcome = "replayed"
    else:
        source = elsewhere(resources, principal, message_id, existing.version)
        outcome = "followed"
    set_outcome(outcome)
    return Launched(source, None, headers, outcome)


def elsewhere(
    resources: Resources, principal: Principal, message_id: str, version: int
) -> FrameSource:
    """A run in progress on another instance: live through the relay, when there is one."""
    if resources.relay is not None:
        return RelayedFrames(_store(resources), resources.relay, principal, message_id, version)
    return StoredFrames(_store(resources), principal, message_id, version)


def _store(resources: Resources) -> Store:
    """The store, which a message sent before (and so stored) implies."""
    if resources.store is None:
        raise StorageDisabled()
    return resources.store
