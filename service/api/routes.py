"""HTTP routes: POST /api/process (the SSE stream), GET /admin/ensemble, /healthz, /readyz."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
from opentelemetry.trace import SpanKind
from quart import Blueprint, Response, current_app, request

from ..ensemble import UnknownEnsemble
from ..errors import InvalidRequest, ShuttingDown, UnsupportedMediaType
from ..pipeline import RunContext, run_pipeline
from ..resources import Resources
from ..telemetry.access_log import CURRENT_REQUEST
from ..telemetry.metrics import render_metrics
from ..telemetry.stream import StreamTelemetry
from ..telemetry.tracing import context_from_headers, trace_id_of, tracer
from .event_stream import EventStreamBody
from .process_request import parse_process_request
from .sse import HEADERS, SseEncoder

routes = Blueprint("routes", __name__)

# The trace this request's spans belong to, for finding it in a tracing backend.
TRACE_ID_HEADER = "X-Trace-Id"


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


@routes.post("/api/process")
async def process() -> Response:
    resources = _resources()
    settings = resources.settings
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(field="Content-Type")
    raw = await request.get_data(as_text=False)
    assert isinstance(raw, bytes)
    pipeline_request = parse_process_request(raw, max_message_chars=settings.max_message_chars)
    if resources.lifecycle.draining:
        raise ShuttingDown()

    # Pinned here: a reload while this request runs changes nothing for it.
    loaded = resources.ensembles.current
    try:
        _, ensemble = loaded.pick(pipeline_request.ensemble)
    except UnknownEnsemble as exc:
        known = ", ".join(exc.known)
        raise InvalidRequest(
            f"ensemble: no ensemble named {exc.name!r} (one of: {known})", field="ensemble"
        ) from exc

    span = tracer.start_span(
        "POST /api/process",
        context=context_from_headers({k.lower(): v for k, v in request.headers.items()}),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/process",
            "fanout.message_id": pipeline_request.message_id,
            "fanout.ensemble": pipeline_request.ensemble or loaded.default,
            "fanout.ensemble_version": loaded.version,
        },
    )
    telemetry = StreamTelemetry(
        span,
        primary_models={member.name: member.model or "" for member in ensemble.members},
    )
    trace_id = trace_id_of(span)
    access = CURRENT_REQUEST.get()
    if access is not None:
        access.trace_id = trace_id
        telemetry.access = access

    log_context = {
        "message_id": pipeline_request.message_id,
        "ensemble_version": loaded.version,
        "trace_id": trace_id,
    }
    if pipeline_request.conversation_id is not None:
        log_context["conversation_id"] = pipeline_request.conversation_id
    run = RunContext(
        request=pipeline_request,
        ensemble=ensemble,
        model=resources.model,
        request_timeout_s=settings.request_timeout_s,
        ensemble_version=loaded.version,
    )
    body = EventStreamBody(
        partial(run_pipeline, run),
        encoder=SseEncoder(
            message_id=pipeline_request.message_id,
            conversation_id=pipeline_request.conversation_id,
        ),
        lifecycle=resources.lifecycle,
        keepalive_s=settings.sse_keepalive_s,
        deadline_s=settings.request_timeout_s,
        log_context=log_context,
        telemetry=telemetry,
    )
    headers = {**HEADERS, TRACE_ID_HEADER: trace_id}
    response = Response(body, status=200, headers=headers, content_type="text/event-stream")
    # Quart would cut the stream at RESPONSE_TIMEOUT; the pipeline keeps its own deadline.
    response.timeout = None
    return response


@routes.get("/admin/ensemble")
async def admin_ensemble() -> dict[str, Any]:
    """The ensemble version in use and, if the latest edit was refused, why."""
    store = _resources().ensembles
    loaded = store.current
    problem = store.problem
    return {
        "version": loaded.version,
        "loaded_at": loaded.loaded_at.isoformat(),
        "source": str(loaded.source),
        "default": loaded.default,
        "ensembles": {
            name: {
                "agents": [{"name": agent.name, "model": agent.model} for agent in ensemble.agents],
                "summarizer": {
                    "name": ensemble.summarizer.name,
                    "model": ensemble.summarizer.model,
                },
                "min_agents": ensemble.min_agents,
            }
            for name, ensemble in loaded.ensembles.items()
        },
        "files": sorted(str(path) for path in loaded.files),
        "problem": (
            None if problem is None else {"message": problem.message, "at": problem.at.isoformat()}
        ),
    }


@routes.get("/metrics")
async def metrics() -> Response:
    # In multiprocess mode this reads every worker's files: not on the event loop.
    body, content_type = await trio.to_thread.run_sync(render_metrics)
    return Response(body, status=200, content_type=content_type)


@routes.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@routes.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    lifecycle = _resources().lifecycle
    if lifecycle.draining:
        return {"status": "draining", "open_streams": lifecycle.open_streams}, 503
    return {"status": "ready", "open_streams": lifecycle.open_streams}, 200
