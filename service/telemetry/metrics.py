"""Prometheus metrics, served at GET /metrics; several worker processes share them when
PROMETHEUS_MULTIPROC_DIR names a directory (prometheus_client's multiprocess mode).

    METRICS.requests.labels(route="/api/process", status="200").inc()
    body, content_type = render_metrics()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# LLM calls take seconds, not milliseconds: buckets from 50 ms to 2 minutes.
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


@dataclass(frozen=True)
class Metrics:
    requests: Counter
    streams_in_flight: Gauge
    connections_open: Gauge
    request_seconds: Histogram
    first_token_seconds: Histogram
    agent_first_token_seconds: Histogram
    agent_seconds: Histogram
    agent_outcomes: Counter
    upstream_tokens: Counter
    client_disconnects: Counter
    cancelled_calls: Counter
    retries: Counter
    fallbacks: Counter
    summary_restarts: Counter
    storage_errors: Counter
    limiter_errors: Counter
    rate_limited: Counter


def _metrics() -> Metrics:
    return Metrics(
        requests=Counter(
            "fanout_http_requests", "HTTP requests by route and status", ["route", "status"]
        ),
        streams_in_flight=Gauge(
            "fanout_streams_in_flight", "Event streams open now", multiprocess_mode="livesum"
        ),
        connections_open=Gauge(
            "fanout_connections_open", "Client connections open now", multiprocess_mode="livesum"
        ),
        request_seconds=Histogram(
            "fanout_request_seconds", "A fan-out from request to its last event", buckets=SECONDS
        ),
        first_token_seconds=Histogram(
            "fanout_first_token_seconds",
            "From the request to the first summary token",
            buckets=SECONDS,
        ),
        agent_first_token_seconds=Histogram(
            "fanout_agent_first_token_seconds",
            "From the request to an agent's first piece of text, as it streams",
            ["agent"],
            buckets=SECONDS,
        ),
        agent_seconds=Histogram(
            "fanout_agent_seconds", "One agent's time, retries included", ["agent"], buckets=SECONDS
        ),
        agent_outcomes=Counter(
            "fanout_agent_outcomes",
            "Agent outcomes: ok, failed or cut, with the error code as reason",
            ["agent", "outcome", "reason"],
        ),
        upstream_tokens=Counter(
            "fanout_upstream_tokens",
            "Tokens the providers reported, by tenant",
            ["model", "kind", "tenant"],
        ),
        client_disconnects=Counter(
            "fanout_client_disconnects", "Streams whose client left before the end"
        ),
        cancelled_calls=Counter(
            "fanout_upstream_calls_cancelled",
            "Upstream calls cancelled in flight: client gone, straggler cut, hedge lost, deadline",
        ),
        retries=Counter("fanout_retries", "Calls sent again after a retryable failure", ["agent"]),
        fallbacks=Counter("fanout_fallbacks", "Answers that came from a fallback model", ["agent"]),
        summary_restarts=Counter(
            "fanout_summary_restarts", "Summaries restarted on a fallback model after a break"
        ),
        storage_errors=Counter(
            "fanout_storage_errors",
            "Database calls that failed (writes after their retries)",
            ["operation"],
        ),
        limiter_errors=Counter(
            "fanout_limiter_errors",
            "Rate limiter calls that failed or timed out (Redis down or slow)",
            ["operation"],
        ),
        rate_limited=Counter("fanout_rate_limited", "Requests refused by a limit", ["limit"]),
    )


METRICS = _metrics()


def multiprocess_dir() -> Path | None:
    """Where worker processes keep their metrics, when prometheus_client's multiprocess mode
    is on (it reads PROMETHEUS_MULTIPROC_DIR from the real environment itself)."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def prepare_multiprocess_dir() -> None:
    """At start: the directory exists and holds nothing from processes of an earlier run
    (their files would be counted again). This process's own files (`*_PID.db`, made when
    its metrics were defined) stay."""
    directory = multiprocess_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for stale in directory.glob("*.db"):
        if not stale.name.endswith(own):
            stale.unlink()


def worker_exiting() -> None:
    """A worker's live gauges (streams in flight) stop counting when it exits."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def render_metrics() -> tuple[bytes, str]:
    """The exposition text, merged across worker processes in multiprocess mode."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
