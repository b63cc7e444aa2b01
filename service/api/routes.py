"""HTTP routes: GET /admin/ensemble, /metrics, /healthz, /readyz (the streams: streams.py)."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, current_app

from ..resources import Resources
from ..telemetry.metrics import render_metrics
from .access import requires

routes = Blueprint("routes", __name__)

# The trace this request's spans belong to, for finding it in a tracing backend.
TRACE_ID_HEADER = "X-Trace-Id"


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


@routes.get("/admin/ensemble")
@requires("admin")
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
@requires("metrics")
async def metrics() -> Response:
    # In multiprocess mode this reads every worker's files: not on the event loop.
    body, content_type = await trio.to_thread.run_sync(render_metrics)
    return Response(body, status=200, content_type=content_type)


@routes.get("/healthz")
@requires("open")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@routes.get("/readyz")
@requires("open")
async def readyz() -> tuple[dict[str, Any], int]:
    lifecycle = _resources().lifecycle
    if lifecycle.draining:
        return {"status": "draining", "open_streams": lifecycle.open_streams}, 503
    return {"status": "ready", "open_streams": lifecycle.open_streams}, 200
