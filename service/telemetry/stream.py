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

from ..events import (
    AgentCompleted,
    AgentDelta,
    AgentFailed,
    Done,
    Event,
    Failed,
    SummaryDelta,
    SummaryRestarted,
)
from ..llm import Usage
from ..principal import DEFAULT_TENANT
from .metrics import METRICS, Metrics
from .request import RequestRecord
from .tracing import end_span

CUT_CODES = frozenset({"agent_cut", "deadline_exceeded"})


class StreamTelemetry:
    def __init__(
        self,
        span: Span,
        *,
        primary_models: Mapping[str, str],
        tenant: str = DEFAULT_TENANT,
        metrics: Metrics = METRICS,
    ) -> None:
        self.span = span
        self._tenant = tenant
        self._primary_models = primary_models
        self._metrics = metrics
        self._started = trio.current_time()
        # The model that answered, per agent, as the answers arrive.
        self._models: dict[str, str] = {}
        self._first_token_seen = False
        # The agents whose first piece of text was seen.
        self._agents_streaming: set[str] = set()
        self.outcome = "open"
        # The request's access-log record, told the stream's outcome when it ends.
        self.access: RequestRecord | None = None
        self._open = False

    def start(self) -> None:
        """The stream's body was entered: from here until `finish` it is in flight."""
        self._open = True
        self._metrics.streams_in_flight.inc()

    def observe(self, event: Event) -> None:
        m = self._metrics
        match event:
            case AgentCompleted(agent=agent, model=model, retries=retries, elapsed_ms=ms):
                self._models[agent] = model
                m.agent_outcomes.labels(agent=agent, outcome="ok", reason="").inc()
                m.agent_seconds.labels(agent=agent).observe(ms / 1000)
                self._count_retries(agent, retries)
                if model and model != self._primary_models.get(agent, model):
                    m.fallbacks.labels(agent=agent).inc()
            case AgentFailed(agent=agent, error=error, retries=retries, elapsed_ms=ms):
                outcome = "cut" if error.code in CUT_CODES else "failed"
                m.agent_outcomes.labels(agent=agent, outcome=outcome, reason=error.code).inc()
                m.agent_seconds.labels(agent=agent).observe(ms / 1000)
                self._count_retries(agent, retries)
            case AgentDelta(agent=agent) if agent not in self._agents_streaming:
                self._agents_streaming.add(agent)
                m.agent_first_token_seconds.labels(agent=agent).observe(
                    trio.current_time() - self._started
                )
            case SummaryDelta() if not self._first_token_seen:
                self._first_token_seen = True
                m.first_token_seconds.observe(trio.current_time() - self._started)
            case SummaryRestarted():
                m.summary_restarts.inc()
            case Done(usage=usage, models=models):
                self._count_tokens(usage, {**self._models, **models})
                self.outcome = "done"
            case Failed(error=error, usage=usage):
                # Tokens of the calls that finished were billed all the same.
                self._count_tokens(usage, self._models)
                self.outcome = error.code
            case _:
                pass

    def _count_retries(self, agent: str, retries: int) -> None:
        if retries:
            self._metrics.retries.labels(agent=agent).inc(retries)

    def _count_tokens(self, usage: Mapping[str, Usage], models: Mapping[str, str]) -> None:
        for caller, used in usage.items():
            model = models.get(caller) or self._primary_models.get(caller) or "unknown"
            tokens = self._metrics.upstream_tokens
            tokens.labels(model=model, kind="prompt", tenant=self._tenant).inc(used.prompt_tokens)
            tokens.labels(model=model, kind="completion", tenant=self._tenant).inc(
                used.completion_tokens
            )

    def finish(self, *, disconnected: bool) -> None:
        """Close the books on this stream: once, when its response ends."""
        m = self._metrics
        if self._open:
            m.streams_in_flight.dec()
            self._open = False
        m.request_seconds.observe(trio.current_time() - self._started)
        if self.access is not None:
            self.access.outcome = (
                "disconnected" if disconnected and self.outcome == "open" else self.outcome
            )
        if disconnected and self.outcome == "open":
            self.outcome = "disconnected"
            m.client_disconnects.inc()
            end_span(self.span, "cancelled")
        elif self.outcome == "done":
            end_span(self.span, "ok")
        else:
            end_span(self.span, "failed", self.outcome)
