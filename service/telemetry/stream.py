"""What one event stream tells the metrics and its request span, event by event.

The api layer hands every event it sends to `observe`, and calls `finish` once when the
response ends, so the pipeline itself needs no metrics code:

    telemetry = StreamTelemetry(span, primary_models={"llm-1": "gpt-4o-mini"})
    telemetry.observe(event)
    telemetry.finish(disconnected=False)
"""

from __future__ import annotations

from collections.abc import Mapping

import trio
from opentelemetry.trace import Span

from ..pipeline import (
    AgentCompleted,
    AgentFailed,
    AgentStarted,
    Done,
    Event,
    Failed,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
)
from .access_log import RequestRecord
from .metrics import METRICS, Metrics
from .tracing import end_span

CUT_CODES = frozenset({"agent_cut", "deadline_exceeded"})


class StreamTelemetry:
    def __init__(
        self,
        span: Span,
        *,
        primary_models: Mapping[str, str],
        metrics: Metrics = METRICS,
    ) -> None:
        self.span = span
        self._primary_models = primary_models
        self._metrics = metrics
        self._started = trio.current_time()
        self._running: set[str] = set()
        self._summarizing = False
        self._first_token_seen = False
        self.outcome = "open"
        # The request's access-log record, told the stream's outcome when it ends.
        self.access: RequestRecord | None = None
        metrics.streams_in_flight.inc()

    def observe(self, event: Event) -> None:
        m = self._metrics
        match event:
            case AgentStarted(agent=agent):
                self._running.add(agent)
            case AgentCompleted(agent=agent, model=model, attempts=attempts, elapsed_ms=ms):
                self._running.discard(agent)
                m.agent_outcomes.labels(agent=agent, outcome="ok", reason="").inc()
                m.agent_seconds.labels(agent=agent).observe(ms / 1000)
                self._count_retries(agent, attempts)
                if model and model != self._primary_models.get(agent, model):
                    m.fallbacks.labels(agent=agent).inc()
            case AgentFailed(agent=agent, error=error, attempts=attempts, elapsed_ms=ms):
                self._running.discard(agent)
                outcome = "cut" if error.code in CUT_CODES else "failed"
                m.agent_outcomes.labels(agent=agent, outcome=outcome, reason=error.code).inc()
                m.agent_seconds.labels(agent=agent).observe(ms / 1000)
                self._count_retries(agent, attempts)
            case SummaryStarted():
                self._summarizing = True
            case SummaryDelta() if not self._first_token_seen:
                self._first_token_seen = True
                m.first_token_seconds.observe(trio.current_time() - self._started)
            case SummaryRestarted():
                m.summary_restarts.inc()
            case Done(usage=usage, models=models):
                self._summarizing = False
                for caller, used in usage.items():
                    model = models.get(caller, "unknown")
                    m.upstream_tokens.labels(model=model, kind="prompt").inc(used.prompt_tokens)
                    m.upstream_tokens.labels(model=model, kind="completion").inc(
                        used.completion_tokens
                    )
                self.outcome = "done"
            case Failed(error=error):
                self._summarizing = False
                self.outcome = error.code
            case _:
                pass

    def _count_retries(self, agent: str, attempts: int) -> None:
        if attempts > 1:
            self._metrics.retries.labels(agent=agent).inc(attempts - 1)

    def finish(self, *, disconnected: bool) -> None:
        """Close the books on this stream: once, when its response ends."""
        m = self._metrics
        m.streams_in_flight.dec()
        m.request_seconds.observe(trio.current_time() - self._started)
        if self.access is not None:
            self.access.outcome = (
                "disconnected" if disconnected and self.outcome == "open" else self.outcome
            )
        if disconnected and self.outcome == "open":
            self.outcome = "disconnected"
            m.client_disconnects.inc()
            m.cancelled_calls.inc(len(self._running) + (1 if self._summarizing else 0))
            end_span(self.span, "cancelled")
        elif self.outcome == "done":
            end_span(self.span, "ok")
        else:
            end_span(self.span, "failed", self.outcome)
