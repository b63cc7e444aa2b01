"""Spans are recorded only once something consumes them, and keep their ids either way."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.telemetry.tracing import _Provider


def test_without_a_span_processor_spans_are_not_recorded_but_have_ids() -> None:
    tracer = _Provider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid
        with tracer.start_as_current_span("agent") as child:
            assert child.get_span_context().trace_id == span.get_span_context().trace_id


def test_once_a_processor_is_added_spans_are_recorded_and_exported() -> None:
    provider = _Provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("request") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


def test_a_parent_that_is_not_sampled_is_still_followed_once_consumed() -> None:
    provider = _Provider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(0)
        )
    )
    context = trace.set_span_in_context(parent)
    span = provider.get_tracer("test").start_span("request", context=context)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 0x1234
