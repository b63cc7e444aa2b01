"""OpenTelemetry traces: a span per request, per agent call and for the summary.

Spans follow the GenAI semantic conventions (`gen_ai.*`) plus the service's own `fanout.*`
attributes. Export uses OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces one)
is set, configured by the standard OTEL_* variables. Without an exporter (or any other span
processor) spans are not recorded at all, but still carry ids: X-Trace-Id and the
`traceparent` sent upstream stay valid.

    setup_tracing(settings)
    with member_span("agent", agent.name, model) as span:
        ...                      # calls made here carry a traceparent whose parent is span
    headers = traceparent_headers()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import trio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from ..llm import Usage

SERVICE_NAME = "llm-fanout"
tracer = trace.get_tracer("service")


class _RecordWhenConsumed(Sampler):
    """Spans are sampled as their parent says (or always, without one), but only once a
    span processor takes them: recording spans no one reads was 9 KB per open stream."""

    def __init__(self) -> None:
        self.consumed = False
        self._sampler = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.consumed:
            return SamplingResult(Decision.DROP)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "ParentBased{root:AlwaysOnSampler} once spans are consumed"


class _Provider(TracerProvider):
    def __init__(self) -> None:
        self._sampler_until_consumed = _RecordWhenConsumed()
        super().__init__(
            sampler=self._sampler_until_consumed,
            resource=Resource.create({"service.name": SERVICE_NAME}),
        )

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self._sampler_until_consumed.consumed = True


_provider: TracerProvider | None = None


def setup_tracing(otlp_endpoint: str | None) -> TracerProvider:
    """Install the tracer provider once; export over OTLP/HTTP when an endpoint is set."""
    global _provider
    if _provider is None:
        _provider = _Provider()
        trace.set_tracer_provider(_provider)
    if otlp_endpoint and not getattr(_provider, "_fanout_exporting", False):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Given explicitly: the setting may come from .env, which the exporter never reads.
        # It reads the other OTEL_EXPORTER_OTLP_* variables (headers, timeout) itself.
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
        _provider.add_span_processor(BatchSpanProcessor(exporter))
        _provider._fanout_exporting = True  # type: ignore[attr-defined]
    return _provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The context an incoming W3C `traceparent` names (an empty one when it has none)."""
    return propagate.extract(dict(headers))


def traceparent_headers() -> tuple[tuple[str, str], ...]:
    """Headers that make the current span the parent of an outgoing call.

    Only `traceparent`: a client's `tracestate` is not passed on to providers.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((k, v) for k, v in sorted(carrier.items()) if k == "traceparent")


def trace_id_of(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def end_span(span: Span, outcome: str, error_code: str | None = None) -> None:
    span.set_attribute("fanout.outcome", outcome)
    if outcome in ("cancelled", "cut"):
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
    elif error_code is not None:
        span.set_attribute("error.type", error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))
    span.end()


@contextmanager
def member_span(role: str, name: str, model: str, version: str) -> Iterator[Span]:
    """A span for one agent's or the summarizer's calls, current while the block runs.

    A block left by cancellation ends the span as `cancelled` unless an outcome was set.
    """
    span = tracer.start_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": model,
            "fanout.role": role,
            "fanout.agent": name,
            "fanout.ensemble_version": version,
        },
    )
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield span
    except BaseException as exc:
        if span.is_recording() and not _has_outcome(span):
            # A nursery inside reports cancellation as a group of Cancelled.
            end_span(span, "cancelled" if only_cancelled(exc) else "failed", "internal_error")
        raise
    finally:
        if span.is_recording():
            if not _has_outcome(span):
                span.set_attribute("fanout.outcome", "ok")
            span.end()


def only_cancelled(exc: BaseException) -> bool:
    """True for trio.Cancelled, and for a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return isinstance(exc, trio.Cancelled)


def record_answer(span: Span, model: str, usage: Usage | None) -> None:
    """The model that answered and the tokens it reported, on a member's span."""
    span.set_attribute("gen_ai.response.model", model)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


def _has_outcome(span: Span) -> bool:
    attributes = getattr(span, "attributes", None) or {}
    return "fanout.outcome" in attributes
