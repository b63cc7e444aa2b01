"""HTTP routes: POST /api/process (the SSE stream), GET /admin/ensemble, /healthz, /readyz."""

from __future__ import annotations

from functools import partial
from typing import Any

from quart import Blueprint, Response, current_app, request

from ..ensemble import UnknownEnsemble
from ..errors import InvalidRequest, ShuttingDown, UnsupportedMediaType
from ..pipeline import run_pipeline
from ..resources import Resources
from .event_stream import EventStreamBody
from .process_request import parse_process_request
from .sse import HEADERS, SseEncoder

routes = Blueprint("routes", __name__)


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

    log_context = {"message_id": pipeline_request.message_id, "ensemble_version": loaded.version}
    if pipeline_request.conversation_id is not None:
        log_context["conversation_id"] = pipeline_request.conversation_id
    body = EventStreamBody(
        partial(
            run_pipeline,
            pipeline_request,
            ensemble,
            resources.model,
            request_timeout_s=settings.request_timeout_s,
            ensemble_version=loaded.version,
        ),
        encoder=SseEncoder(
            message_id=pipeline_request.message_id,
            conversation_id=pipeline_request.conversation_id,
        ),
        lifecycle=resources.lifecycle,
        keepalive_s=settings.sse_keepalive_s,
        log_context=log_context,
    )
    response = Response(body, status=200, headers=HEADERS, content_type="text/event-stream")
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


@routes.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@routes.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    lifecycle = _resources().lifecycle
    if lifecycle.draining:
        return {"status": "draining", "open_streams": lifecycle.open_streams}, 503
    return {"status": "ready", "open_streams": lifecycle.open_streams}, 200
