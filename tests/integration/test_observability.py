"""Traces, metrics and logs of real requests through the real server and a fake upstream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from service.logs import JsonFormatter, RequestContext
from service.telemetry.tracing import setup_tracing
from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import RunningService, iter_events, read_events, running_service

BODY = {"message": "Why is the sky blue, really?", "message_id": "msg-obs"}
EXPORTER = InMemorySpanExporter()
setup_tracing(None).add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture(autouse=True)
def clear_spans() -> Iterator[None]:
    EXPORTER.clear()
    yield
    EXPORTER.clear()


def upstream() -> FakeUpstream:
    return FakeUpstream(
        {
            "fake-a": Behaviour(reply="Scattering of short wavelengths.", first_token_delay_s=0.05),
            "fake-b": Behaviour(reply="Rayleigh.", first_token_delay_s=0.05),
            "fake-denied": Behaviour(status=401),
            "fake-summary": Behaviour(tokens=("Blue ", "light ", "scatters."), token_delay_s=0.01),
            "fake-slow-summary": Behaviour(tokens=("x ",) * 50, token_delay_s=0.1),
        }
    )


def spans_by_name() -> dict[str, ReadableSpan]:
    spans = {}
    for span in EXPORTER.get_finished_spans():
        key = str(span.attributes.get("fanout.agent", span.name)) if span.attributes else span.name
        spans[key] = span
    return spans


async def wait_for_spans(count: int) -> None:
    with trio.fail_after(3):
        while len(EXPORTER.get_finished_spans()) < count:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_fan_out_with_a_failing_agent_is_one_trace_with_a_span_per_call(
    tmp_path: Path,
) -> None:
    fake = upstream()
    agents = {"alpha": "fake-a", "denied": "fake-denied"}
    async with running_service(tmp_path, fake, agents=agents) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)
            trace_header = response.headers["x-trace-id"]
    await wait_for_spans(4)

    assert events[-1].event == "done"
    spans = spans_by_name()
    request, alpha, denied, summary = (
        spans["POST /api/process"],
        spans["alpha"],
        spans["denied"],
        spans["combine"],
    )
    assert request.kind == SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == trace_header
    for child in (alpha, denied, summary):
        assert child.context.trace_id == request.context.trace_id
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.kind == SpanKind.CLIENT
    # The agents ran side by side: each started before the other ended.
    assert alpha.start_time < denied.end_time
    assert denied.start_time < alpha.end_time
    assert summary.start_time >= max(alpha.end_time, denied.end_time)

    assert alpha.name == "chat fake-a"
    assert alpha.attributes["gen_ai.operation.name"] == "chat"
    assert alpha.attributes["gen_ai.request.model"] == "fake-a"
    assert alpha.attributes["gen_ai.response.model"] == "fake-a"
    assert alpha.attributes["gen_ai.usage.output_tokens"] > 0
    assert alpha.attributes["fanout.outcome"] == "ok"
    assert alpha.attributes["fanout.retries"] == 0
    assert len(alpha.attributes["fanout.ensemble_version"]) == 12
    assert denied.attributes["fanout.outcome"] == "failed"
    assert denied.attributes["error.type"] == "upstream_auth_failed"
    assert denied.status.status_code == StatusCode.ERROR
    assert [event.name for event in summary.events] == ["gen_ai.first_token"]
    assert request.attributes["fanout.outcome"] == "ok"

    # The provider sees our agent span as the parent of its own work.
    (call,) = fake.calls_for("fake-a")
    _, trace_id, parent_id, _ = call.headers["traceparent"].split("-")
    assert trace_id == format(alpha.context.trace_id, "032x")
    assert parent_id == format(alpha.context.span_id, "016x")
    (summary_call,) = fake.calls_for("fake-summary")
    assert summary_call.headers["traceparent"].split("-")[2] == format(
        summary.context.span_id, "016x"
    )


async def test_an_incoming_traceparent_is_the_parent_of_the_request_span(
    tmp_path: Path,
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with running_service(tmp_path, upstream()) as service:
        async with service.client.stream(
            "POST", "/api/process", json=BODY, headers={"traceparent": parent}
        ) as response:
            await read_events(response)
            assert response.headers["x-trace-id"] == "0af7651916cd43dd8448eb211c80319c"
    await wait_for_spans(4)
    request = spans_by_name()["POST /api/process"]
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == "b7ad6b7169203331"


async def test_a_mid_stream_disconnect_ends_every_span_as_cancelled(tmp_path: Path) -> None:
    fake = upstream()
    async with running_service(
        tmp_path, fake, agents={"alpha": "fake-a"}, summarizer_model="fake-slow-summary"
    ) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            stream = aiter(iter_events(response))
            while (await anext(stream)).event != "summary.delta":
                pass
        await wait_for_spans(3)

    spans = spans_by_name()
    assert set(spans) == {"POST /api/process", "alpha", "combine"}
    for name in ("POST /api/process", "combine"):
        assert spans[name].attributes["fanout.outcome"] == "cancelled"
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].status.description == "cancelled"
    assert spans["alpha"].attributes["fanout.outcome"] == "ok"
    assert all(span.end_time is not None for span in EXPORTER.get_finished_spans())


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def metrics_of(
    service: RunningService,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return scrape(response.text)


async def test_metrics_count_a_known_sequence_of_requests(tmp_path: Path) -> None:
    fake = upstream()
    agents = {"alpha": "fake-a", "denied": "fake-denied"}
    async with running_service(tmp_path, fake, agents=agents) as service:
        before = await metrics_of(service)
        for number in range(2):
            # Two messages: the same message_id again would be a replay, not a run.
            body = {**BODY, "message_id": f"{BODY['message_id']}-{number}"}
            async with service.client.stream("POST", "/api/process", json=body) as response:
                await read_events(response)
        bad = await service.client.post("/api/process", json={"message": ""})
        assert bad.status_code == 400
        after = await metrics_of(service)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("fanout_http_requests_total", route="/api/process", status="200") == 2
    assert delta("fanout_http_requests_total", route="/api/process", status="400") == 1
    assert delta("fanout_agent_outcomes_total", agent="alpha", outcome="ok", reason="") == 2
    assert (
        delta(
            "fanout_agent_outcomes_total",
            agent="denied",
            outcome="failed",
            reason="upstream_auth_failed",
        )
        == 2
    )
    assert delta("fanout_agent_seconds_count", agent="alpha") == 2
    assert delta("fanout_request_seconds_count") == 2
    assert delta("fanout_first_token_seconds_count") == 2
    prompt_tokens = delta(
        "fanout_upstream_tokens_total", model="fake-a", kind="prompt", tenant="default"
    )
    assert prompt_tokens > 0
    assert (
        delta(
            "fanout_upstream_tokens_total",
            model="fake-summary",
            kind="completion",
            tenant="default",
        )
        == 6
    )
    assert after[("fanout_streams_in_flight", ())] == 0


async def test_a_disconnect_is_counted_with_the_upstream_calls_it_cancelled(
    tmp_path: Path,
) -> None:
    fake = upstream()
    async with running_service(
        tmp_path, fake, agents={"alpha": "fake-a"}, summarizer_model="fake-slow-summary"
    ) as service:
        before = await metrics_of(service)
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            stream = aiter(iter_events(response))
            while (await anext(stream)).event != "summary.delta":
                pass
        with trio.fail_after(2):
            for call in fake.calls:
                await call.ended.wait()
        await trio.sleep(0.05)
        after = await metrics_of(service)

    def delta(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    assert delta("fanout_client_disconnects_total") == 1
    assert delta("fanout_upstream_calls_cancelled_total") == 1
    assert after[("fanout_streams_in_flight", ())] == 0


async def test_log_lines_are_json_with_ids_and_one_access_line_per_request(
    tmp_path: Path,
) -> None:
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContext())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        agents = {"alpha": "fake-a", "denied": "fake-denied"}
        async with running_service(tmp_path, upstream(), agents=agents) as service:
            async with service.client.stream(
                "POST", "/api/process", json=BODY, headers={"x-request-id": "req-42"}
            ) as response:
                await read_events(response)
                assert response.headers["x-request-id"] == "req-42"
                trace_id = response.headers["x-trace-id"]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "service.access"]
    (stream_line,) = [line for line in access if line["path"] == "/api/process"]
    assert stream_line["status"] == 200
    assert stream_line["outcome"] == "done"
    assert stream_line["disconnected"] is False
    assert stream_line["request_id"] == "req-42"
    assert stream_line["trace_id"] == trace_id
    assert stream_line["duration_ms"] > 0
    (failure,) = [line for line in lines if line["message"].startswith("agent denied failed")]
    assert (failure["request_id"], failure["trace_id"]) == ("req-42", trace_id)
    assert (failure["message_id"], failure["agent"]) == ("msg-obs", "denied")
    # Neither the question nor any answer is written at info level.
    for line in lines:
        if line["level"] == "info":
            assert "sky blue" not in line["message"]
            assert "Rayleigh" not in line["message"]


def ensemble_text(agents: dict[str, str], extra: str = "", **top: str) -> str:
    lines = [f"{key} = {value}" for key, value in top.items()]
    for name, model in agents.items():
        lines += ["[[agents]]", f'name = "{name}"', f'model = "{model}"', 'system_prompt = "p"']
        if extra and name in extra:
            lines.append(extra.split(":", 1)[1])
    lines += ["[summarizer]", 'name = "combine"', 'model = "fake-summary"', 'system_prompt = "c"']
    return "\n".join(lines) + "\n"


async def test_cut_and_abandoned_agents_end_their_spans_as_such(tmp_path: Path) -> None:
    fake = upstream()
    fake.behaviours["fake-stall"] = Behaviour(stall=True)
    text = ensemble_text({"alpha": "fake-a", "stuck": "fake-stall"}, straggler_grace_ms="100")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            await read_events(response)
        await wait_for_spans(4)
        cut = spans_by_name()["stuck"]
        EXPORTER.clear()

        # A client that leaves while both agents still work: both spans end cancelled.
        text_all_stalled = {"alpha": "fake-stall", "beta": "fake-stall"}
        (tmp_path / "ensemble.toml").write_text(ensemble_text(text_all_stalled))
        await service.resources.ensembles.reload("test")
        second = {**BODY, "message_id": "second"}  # the same id again would be a replay
        async with service.client.stream("POST", "/api/process", json=second) as response:
            stream = aiter(iter_events(response))
            assert (await anext(stream)).event == "agent.started"
        await wait_for_spans(3)

    assert cut.attributes["fanout.outcome"] == "cut"
    assert cut.status.status_code == StatusCode.ERROR
    spans = spans_by_name()
    for name in ("alpha", "beta", "POST /api/process"):
        assert spans[name].attributes["fanout.outcome"] == "cancelled"


async def test_tokens_of_a_failed_run_and_fallbacks_are_counted_apart_from_retries(
    tmp_path: Path,
) -> None:
    fake = upstream()
    text = ensemble_text(
        {"alpha": "fake-a", "denied": "fake-denied"},
        extra='denied:fallback_models = ["fake-b"]',
        min_agents="3",
    ).replace("min_agents = 3", "min_agents = 2")
    # `down` fails after `alpha` answered, so the run fails with an answer in hand.
    fake.behaviours["fake-denied-late"] = Behaviour(status=401, first_token_delay_s=1.0)
    quorum = ensemble_text({"alpha": "fake-a", "down": "fake-denied-late"}, min_agents="2")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        before = await metrics_of(service)
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)
        middle = await metrics_of(service)
        (tmp_path / "ensemble.toml").write_text(quorum)
        await service.resources.ensembles.reload("test")
        second = {**BODY, "message_id": "second"}  # the same id again would be a replay
        async with service.client.stream("POST", "/api/process", json=second) as response:
            failed = await read_events(response)
        after = await metrics_of(service)

    def delta(first: dict[Any, float], second: dict[Any, float], name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return second.get(key, 0.0) - first.get(key, 0.0)

    assert events[-1].event == "done"
    # The 401 is not retried; the fallback answers: one fallback, no retry.
    assert delta(before, middle, "fanout_fallbacks_total", agent="denied") == 1
    assert delta(before, middle, "fanout_retries_total", agent="denied") == 0
    assert failed[-1].data["error"]["code"] == "quorum_not_met"
    # The answer that arrived was billed, though the run failed.
    assert (
        delta(
            middle,
            after,
            "fanout_upstream_tokens_total",
            model="fake-a",
            kind="completion",
            tenant="default",
        )
        > 0
    )
