"""HTTP routes: POST /api/process (the SSE stream), GET /healthz and GET /readyz."""

from __future__ import annotations

from functools import partial
from typing import Any

from quart import Blueprint, Response, current_app, request

from ..errors import ShuttingDown, UnsupportedMediaType
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

    log_context = {"message_id": pipeline_request.message_id}
    if pipeline_request.conversation_id is not None:
        log_context["conversation_id"] = pipeline_request.conversation_id
    body = EventStreamBody(
        partial(
            run_pipeline,
            pipeline_request,
            resources.ensemble,
            resources.model,
            request_timeout_s=settings.request_timeout_s,
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


@routes.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@routes.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    lifecycle = _resources().lifecycle
    if lifecycle.draining:
        return {"status": "draining", "open_streams": lifecycle.open_streams}, 503
    return {"status": "ready", "open_streams": lifecycle.open_streams}, 200
