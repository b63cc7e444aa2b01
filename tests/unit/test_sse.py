"""SSE framing: ids count up, every payload line is prefixed, the fields match the table."""

from __future__ import annotations

import json

from service.api.writers.sse import SseEncoder, frame
from service.llm import Usage
from service.pipeline import (
    AgentCompleted,
    AgentCounts,
    AgentFailed,
    AgentStarted,
    Done,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
    Timings,
)


def parse(raw: bytes) -> tuple[dict[str, str], dict[str, object]]:
    assert raw.endswith(b"\n\n")
    fields: dict[str, str] = {}
    data_lines = []
    for line in raw.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        if name == "data":
            data_lines.append(value)
        else:
            fields[name] = value
    return fields, json.loads("\n".join(data_lines))


def test_every_line_of_a_multiline_payload_gets_its_own_data_prefix() -> None:
    assert frame(7, "x", "a\nb\n") == b"id: 7\nevent: x\ndata: a\ndata: b\ndata: \n\n"


def test_a_token_with_newlines_stays_inside_one_data_line() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    raw = encoder.encode(SummaryDelta(summarizer="s", text="line one\n\nline two\r\n"))
    assert raw.count(b"\ndata: ") == 1
    _, payload = parse(raw)
    assert payload["message"] == "line one\n\nline two\r\n"


def test_ids_count_up_from_one_and_seed_fields_are_present() -> None:
    encoder = SseEncoder(message_id="m-1", conversation_id="c-9")
    first, payload = parse(encoder.encode(AgentStarted(agent="llm-1")))
    second, _ = parse(encoder.encode(AgentCompleted(agent="llm-1", text="hi")))
    assert (first["id"], second["id"]) == ("1", "2")
    assert first["event"] == "agent.started"
    assert payload == {
        "message_id": "m-1",
        "conversation_id": "c-9",
        "type": "agent.started",
        "status": "Sending to llm-1",
        "source": "llm-1",
        "final": False,
    }


def test_conversation_id_is_left_out_when_not_given() -> None:
    _, payload = parse(
        SseEncoder(message_id="m", conversation_id=None).encode(AgentStarted(agent="a"))
    )
    assert "conversation_id" not in payload


def test_each_event_type_has_its_status_source_and_extras() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    error = PublicError(code="upstream_timeout", message="slow")
    cases = [
        (AgentCompleted(agent="a", text="ans"), "agent.completed", "Received from a", "a"),
        (AgentFailed(agent="a", error=error), "agent.failed", "Failed a", "a"),
        (
            SummaryStarted(summarizer="s", agents=("a",), missing=("b",)),
            "summary.started",
            "Combining via s",
            "s",
        ),
        (SummaryDelta(summarizer="s", text="t"), "summary.delta", "Streaming", "s"),
    ]
    for event, kind, status, source in cases:
        fields, payload = parse(encoder.encode(event))
        assert (fields["event"], payload["type"], payload["status"], payload["source"]) == (
            kind,
            kind,
            status,
            source,
        )
        assert payload["final"] is False
    _, failed = parse(encoder.encode(AgentFailed(agent="a", error=error)))
    assert failed["error"] == {"code": "upstream_timeout", "message": "slow"}
    _, started = parse(
        encoder.encode(SummaryStarted(summarizer="s", agents=("a",), missing=("b",)))
    )
    assert (started["agents"], started["missing"]) == (["a"], ["b"])


def test_done_and_error_are_final_with_usage_and_timings() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    done = Done(
        summarizer="s",
        usage={"a": Usage(3, 4)},
        timings=Timings(agents_ms={"a": 12.5}, first_token_ms=20.0, total_ms=30.0),
        agents=AgentCounts(succeeded=1, failed=1, cut=1),
        models={"a": "backup", "s": "m"},
    )
    fields, payload = parse(encoder.encode(done))
    assert payload["agents"] == {"succeeded": 1, "failed": 1, "cut": 1}
    assert payload["models"] == {"a": "backup", "s": "m"}
    assert fields["event"] == "done"
    assert (payload["status"], payload["source"], payload["final"]) == ("Completed", "s", True)
    assert payload["usage"] == {"a": {"prompt_tokens": 3, "completion_tokens": 4}}
    assert payload["timings"] == {
        "agents_ms": {"a": 12.5},
        "first_token_ms": 20.0,
        "total_ms": 30.0,
    }

    error = Failed(source="agents", error=PublicError("no_agent_succeeded", "none"))
    fields, payload = parse(encoder.encode(error))
    assert fields["event"] == "error"
    assert (payload["status"], payload["source"], payload["final"]) == ("error", "agents", True)
    assert payload["error"] == {"code": "no_agent_succeeded", "message": "none"}
    assert "agents" not in payload
    counted = Failed(
        source="agents", error=PublicError("quorum_not_met", "few"), agents=AgentCounts(1, 2, 0)
    )
    _, payload = parse(encoder.encode(counted))
    assert payload["agents"] == {"succeeded": 1, "failed": 2, "cut": 0}


def test_agent_outcomes_say_which_model_answered_and_how_many_attempts_it_took() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    _, completed = parse(
        encoder.encode(AgentCompleted(agent="a", text="hi", model="backup", attempts=3))
    )
    assert (completed["model"], completed["attempts"]) == ("backup", 3)
    cut = AgentFailed(agent="b", error=PublicError("agent_cut", "too slow"), attempts=1)
    _, failed = parse(encoder.encode(cut))
    assert (failed["error"]["code"], failed["attempts"]) == ("agent_cut", 1)


def test_a_summary_restart_tells_the_client_to_drop_the_text_so_far() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    restarted = SummaryRestarted(
        summarizer="s", model="backup", error=PublicError("upstream_unavailable", "down")
    )
    fields, payload = parse(encoder.encode(restarted))
    assert fields["event"] == "summary.restarted"
    assert (payload["source"], payload["model"], payload["discard"]) == ("s", "backup", True)
    assert payload["error"] == {"code": "upstream_unavailable", "message": "down"}
    assert payload["final"] is False


def test_a_lone_surrogate_from_a_provider_is_replaced_not_fatal() -> None:
    encoder = SseEncoder(message_id="m", conversation_id=None)
    raw = encoder.encode(SummaryDelta(summarizer="s", text="ok \ud800 é"))
    _, payload = parse(raw)
    assert payload["message"] == "ok ? é"
