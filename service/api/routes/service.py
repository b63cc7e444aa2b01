"""HTTP routes: GET /admin/ensemble, /metrics, /healthz, /readyz (the streams: streams.py)."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, current_app

from ...resources import Resources
from ...telemetry.metrics import render_metrics
from ..access import requires
from ..contract.document import documented, raw, returns
from ..contract.schemas import EnsembleStatus, Health, Readiness, respond

routes = Blueprint("routes", __name__)

# The trace this request's spans belong to, for finding it in a tracing backend.
TRACE_ID_HEADER = "X-Trace-Id"


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


@routes.get("/admin/ensemble")
@requires("admin")
@documented(
    "The ensembles in use: version, files, members, and why the latest edit was refused",
    tag="admin",
    replies={200: returns(EnsembleStatus)},
)
async def admin_ensemble() -> dict[str, Any]:
    """The ensemble version in use and, if the latest edit was refused, why."""
    store = _resources().ensembles
    loaded = store.current
    problem = store.problem
    status = {
        "version": loaded.version,
        "loaded_at": loaded.loaded_at.isoformat(),
        "source": str(loaded.source),
        "default": loaded.default,
        "ensembles": {
            name: {
                "agents": [{"name": agent.name, "model": agent.model} for agent in ensemble.agents],
                "summarizer": (
                    {"name": ensemble.summarizer.name, "model": ensemble.summarizer.model}
                    if ensemble.summarizer is not None
                    else None
                ),
                "min_agents": ensemble.min_agents,
                "strategy": ensemble.strategy,
                "summarizer_role": ensemble.summarizer_role,
                "calls_per_request": ensemble.calls_per_request,
            }
            for name, ensemble in loaded.ensembles.items()
        },
        "files": sorted(str(path) for path in loaded.files),
        "problem": (
            None if problem is None else {"message": problem.message, "at": problem.at.isoformat()}
        ),
    }
    return respond(EnsembleStatus.model_validate(status))


@routes.get("/metrics")
@requires("metrics")
@documented(
    "Prometheus metrics",
    tag="operations",
    description="For an admin, or a scraper with METRICS_TOKEN.",
    replies={200: raw("text/plain", "Prometheus's text format")},
)
async def metrics() -> Response:
    # In multiprocess mode this reads every worker's files: not on the event loop.
    body, content_type = await trio.to_thread.run_sync(render_metrics)
    return Response(body, status=200, content_type=content_type)


@routes.get("/healthz")
@requires("open")
@documented("The process is alive", tag="operations", replies={200: returns(Health)})
async def healthz() -> dict[str, Any]:
    return respond(Health(status="ok"))


@routes.get("/readyz")
@requires("open")
@documented(
    "Ready for new requests",
    tag="operations",
    replies={
        200: returns(Readiness, "Ready"),
        503: returns(Readiness, "Draining: shutting down, new streams are refused"),
    },
)
async def readyz() -> tuple[dict[str, Any], int]:
    lifecycle = _resources().lifecycle
    if lifecycle.draining:
        return respond(Readiness(status="draining", open_streams=lifecycle.open_streams)), 503
    return respond(Readiness(status="ready", open_streams=lifecycle.open_streams)), 200
