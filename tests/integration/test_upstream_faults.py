"""Every fault a provider shows, through the real service and the fake upstream over HTTP.

Each test asserts what the client sees (events and codes), what the fake saw (calls, retries,
fallbacks, headers), that no provider text leaks into the stream, and that no upstream call
is left open afterwards.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fake_upstream import SECRET_DETAIL_MARKER, Behaviour, FakeUpstream
from tests.integration.harness import RunningService, SseEvent, read_events, running_service

BODY = {"message": "Why is the sky blue?", "message_id": "msg-faults"}
SUMMARY_TOKENS = ("Light ", "scatters ", "and ", "blue ", "wins.")
MOCK_FAILURES_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mock-failures.toml"


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def ensemble(
    agents: dict[str, dict[str, Any]],
    summarizer: dict[str, Any] | None = None,
    providers: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> str:
    """An ensemble file; each member's dict holds its keys besides name and prompt."""
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for name, keys in (providers or {}).items():
        lines.append(f"[providers.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    for name, keys in agents.items():
        lines += ["[[agents]]", f'name = "{name}"', f'system_prompt = "You are {name}."']
        lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    lines += ["[summarizer]", 'name = "combine"', 'system_prompt = "Combine."']
    summarizer = {"model": "fake-summary", **(summarizer or {})}
    lines += [f"{key} = {toml_value(value)}" for key, value in summarizer.items()]
    return "\n".join(lines) + "\n"


def upstream(**behaviours: Behaviour) -> FakeUpstream:
    return FakeUpstream(
        {
            "fake-ok": Behaviour(reply="The ok agent answers."),
            "fake-summary": Behaviour(tokens=SUMMARY_TOKENS),
            **{name.replace("_", "-"): b for name, b in behaviours.items()},
        }
    )


async def ask(service: RunningService, fake: FakeUpstream) -> list[SseEvent]:
    """One request's events; asserts nothing leaked and no upstream call is left open."""
    async with service.client.stream("POST", "/api/process", json=BODY) as response:
        assert response.status_code == 200
        events = await read_events(response)
    raw = json.dumps([event.data for event in events])
    assert SECRET_DETAIL_MARKER not in raw
    assert "Error code" not in raw
    with trio.fail_after(2):
        for call in fake.calls:
            await call.ended.wait()
    assert events[-1].event in ("done", "error")
    return events


def of(events: list[SseEvent], kind: str, source: str | None = None) -> list[dict[str, Any]]:
    return [
        e.data for e in events if e.event == kind and (source is None or e.data["source"] == source)
    ]


async def test_a_429_is_retried_after_its_retry_after_and_then_answers(tmp_path: Path) -> None:
    fake = upstream(
        fake_limited=Behaviour(
            reply="Limited, then fine.", status=429, retry_after="0.3", fail_first=1
        )
    )
    text = ensemble({"ok": {"model": "fake-ok"}, "limited": {"model": "fake-limited"}})
    async with running_service(tmp_path, fake, ensemble=text) as service:
        events = await ask(service, fake)

    (completed,) = of(events, "agent.completed", "limited")
    assert (completed["message"], completed["attempts"]) == ("Limited, then fine.", 2)
    first, second = fake.calls_for("fake-limited")
    assert first.ended_at is not None
    assert second.started_at - first.ended_at >= 0.3
    assert events[-1].event == "done"


async def test_a_5xx_is_retried_with_backoff_until_the_retries_run_out(tmp_path: Path) -> None:
    fake = upstream(fake_down=Behaviour(status=503))
    text = ensemble({"ok": {"model": "fake-ok"}, "down": {"model": "fake-down", "retries": 2}})
    async with running_service(tmp_path, fake, ensemble=text) as service:
        events = await ask(service, fake)

    (failed,) = of(events, "agent.failed", "down")
    assert failed["error"]["code"] == "upstream_unavailable"
    assert failed["attempts"] == 3
    calls = fake.calls_for("fake-down")
    assert len(calls) == 3
    gaps = [b.started_at - (a.ended_at or 0) for a, b in itertools.pairwise(calls)]
    # Jittered exponential backoff: 0.125-0.25 s, then 0.25-0.5 s.
    # (Upper bounds leave room for a loaded machine; the unit tests pin them exactly.)
    assert 0.12 <= gaps[0] <= 0.5
    assert 0.25 <= gaps[1] <= 0.8
    assert events[-1].event == "done"
    assert events[-1].data["agents"] == {"succeeded": 1, "failed": 1, "cut": 0}


async def test_a_refused_key_is_not_retried_and_the_fallback_model_answers(
    tmp_path: Path,
) -> None:
    fake = upstream(fake_401=Behaviour(status=401))
    agents = {
        "ok": {"model": "fake-ok"},
        "keyed": {"model": "fake-401", "fallback_models": ["fake-ok"]},
    }
    async with running_service(tmp_path, fake, ensemble=ensemble(agents)) as service:
        events = await ask(service, fake)

    assert len(fake.calls_for("fake-401")) == 1
    (completed,) = of(events, "agent.completed", "keyed")
    assert (completed["model"], completed["attempts"]) == ("fake-ok", 2)
    assert events[-1].data["models"] == {
        "ok": "fake-ok",
        "keyed": "fake-ok",
        "combine": "fake-summary",
    }


async def test_malformed_json_is_a_bad_response_and_is_not_retried(tmp_path: Path) -> None:
    fake = upstream(fake_garbled=Behaviour(malformed=True))
    agents = {"ok": {"model": "fake-ok"}, "garbled": {"model": "fake-garbled"}}
    async with running_service(tmp_path, fake, ensemble=ensemble(agents)) as service:
        events = await ask(service, fake)

    (failed,) = of(events, "agent.failed", "garbled")
    assert (failed["error"]["code"], failed["attempts"]) == ("upstream_bad_response", 1)
    assert len(fake.calls_for("fake-garbled")) == 1
    assert events[-1].event == "done"


async def test_a_reset_connection_is_retried(tmp_path: Path) -> None:
    fake = upstream(fake_reset=Behaviour(reply="After a reset.", reset=True, fail_first=1))
    async with running_service(
        tmp_path, fake, ensemble=ensemble({"reset": {"model": "fake-reset"}})
    ) as service:
        events = await ask(service, fake)

    assert [call.outcome for call in fake.calls_for("fake-reset")] == ["reset", "completed"]
    (completed,) = of(events, "agent.completed", "reset")
    assert (completed["message"], completed["attempts"]) == ("After a reset.", 2)


async def test_an_agent_whose_answer_is_cut_off_is_retried(tmp_path: Path) -> None:
    fake = upstream(
        fake_cut=Behaviour(
            reply="Cut once, whole the second time.", cut_after_tokens=2, fail_first=1
        )
    )
    async with running_service(
        tmp_path, fake, ensemble=ensemble({"cut": {"model": "fake-cut"}})
    ) as service:
        events = await ask(service, fake)

    assert [call.outcome for call in fake.calls_for("fake-cut")] == ["cut", "completed"]
    (completed,) = of(events, "agent.completed", "cut")
    assert completed["attempts"] == 2


async def test_a_stalled_agent_times_out_and_its_connection_is_closed(tmp_path: Path) -> None:
    fake = upstream(fake_stall=Behaviour(stall=True))
    agents = {"ok": {"model": "fake-ok"}, "stuck": {"model": "fake-stall", "timeout_s": 0.5}}
    async with running_service(tmp_path, fake, ensemble=ensemble(agents)) as service:
        events = await ask(service, fake)

    (failed,) = [e for e in events if e.event == "agent.failed"]
    assert failed.data["error"]["code"] == "upstream_timeout"
    (call,) = fake.calls_for("fake-stall")
    assert call.outcome == "disconnected"
    assert call.ended_at is not None
    # The upstream sees its connection closed as the client hears of the timeout.
    assert abs(failed.arrived_at - call.ended_at) < 0.1


async def test_a_slow_agent_is_hedged_and_the_loser_is_cancelled_at_once(tmp_path: Path) -> None:
    fake = upstream(
        fake_slow=Behaviour(reply="Slow.", first_token_delay_s=30),
        fake_quick=Behaviour(reply="Quick hedge.", first_token_delay_s=0.05),
    )
    agent = {"model": "fake-slow", "fallback_models": ["fake-quick"], "hedge_after_ms": 200}
    async with running_service(tmp_path, fake, ensemble=ensemble({"hedged": agent})) as service:
        asked_at = trio.current_time()  # before the agent started: a floor for its start
        events = await ask(service, fake)

    (completed,) = of(events, "agent.completed", "hedged")
    assert (completed["message"], completed["model"]) == ("Quick hedge.", "fake-quick")
    (started,) = [e for e in events if e.event == "agent.started"]
    (slow,) = fake.calls_for("fake-slow")
    (quick,) = fake.calls_for("fake-quick")
    # The hedge leaves 0.2 s after the agent started; virtual-time tests pin it exactly.
    # Here, on real sockets: not before 0.2 s after the request was sent (which is before
    # the agent started), and within 0.6 s of the client's receipt of `agent.started`
    # (which is after it). The receipt is no floor: on a loaded machine it lags the start.
    assert quick.started_at - asked_at >= 0.2
    assert quick.started_at - started.arrived_at < 0.6
    assert slow.outcome == "disconnected"
    assert quick.ended_at is not None
    assert slow.ended_at is not None
    assert abs(slow.ended_at - quick.ended_at) < 0.1


async def test_a_straggler_is_cut_after_the_grace_and_its_call_closed(tmp_path: Path) -> None:
    fake = upstream(fake_stall=Behaviour(stall=True))
    agents = {"ok": {"model": "fake-ok"}, "straggler": {"model": "fake-stall"}}
    text = ensemble(agents, min_agents=1, straggler_grace_ms=200)
    async with running_service(tmp_path, fake, ensemble=text) as service:
        events = await ask(service, fake)

    (failed,) = of(events, "agent.failed", "straggler")
    assert failed["error"]["code"] == "agent_cut"
    (started,) = of(events, "summary.started")
    assert (started["agents"], started["missing"]) == (["ok"], ["straggler"])
    assert fake.calls_for("fake-stall")[0].outcome == "disconnected"
    assert events[-1].data["agents"] == {"succeeded": 1, "failed": 0, "cut": 1}


async def test_a_summary_cut_mid_stream_restarts_once_on_the_fallback(tmp_path: Path) -> None:
    fake = upstream(
        fake_summary_cut=Behaviour(tokens=("Half ", "a ", "summ"), cut_after_tokens=2),
    )
    summarizer = {"model": "fake-summary-cut", "fallback_models": ["fake-summary"]}
    text = ensemble({"ok": {"model": "fake-ok"}}, summarizer=summarizer)
    async with running_service(tmp_path, fake, ensemble=text) as service:
        events = await ask(service, fake)

    kinds = [e.event for e in events]
    restart = kinds.index("summary.restarted")
    assert kinds[restart - 2 : restart] == ["summary.delta", "summary.delta"]
    (restarted,) = of(events, "summary.restarted")
    assert restarted["model"] == "fake-summary"
    assert restarted["error"]["code"] == "upstream_unavailable"
    assert restarted["discard"] is True
    after = "".join(e.data["message"] for e in events[restart:] if e.event == "summary.delta")
    assert after == "".join(SUMMARY_TOKENS)
    assert [c.outcome for c in fake.calls_for("fake-summary-cut")] == ["cut"]
    assert events[-1].event == "done"
    assert events[-1].data["models"]["combine"] == "fake-summary"


async def test_a_summarizer_failing_before_any_token_ends_with_its_code(tmp_path: Path) -> None:
    fake = upstream(fake_summary_down=Behaviour(status=500))
    text = ensemble(
        {"ok": {"model": "fake-ok"}}, summarizer={"model": "fake-summary-down", "retries": 1}
    )
    async with running_service(tmp_path, fake, ensemble=text) as service:
        events = await ask(service, fake)

    assert not of(events, "summary.delta")
    assert events[-1].event == "error"
    assert (events[-1].data["source"], events[-1].data["error"]["code"]) == (
        "combine",
        "upstream_unavailable",
    )
    assert len(fake.calls_for("fake-summary-down")) == 2


async def test_providers_send_their_own_key_headers_and_parameters(tmp_path: Path) -> None:
    fake = upstream()
    providers = {
        "first": {
            "base_url": "{upstream}",
            "api_key_env": "FIRST_KEY",
            "headers": {"X-Provider": "first"},
        },
        "second": {"base_url": "{upstream}/", "api_key_env": "SECOND_KEY"},
    }
    agents = {
        "a": {"provider": "first", "model": "fake-ok", "temperature": 0.3, "max_tokens": 77},
        "b": {"provider": "second", "model": "fake-ok", "headers": {"X-Agent": "b"}},
    }
    text = ensemble(agents, summarizer={"provider": "first"}, providers=providers)
    env = {"FIRST_KEY": "key-one", "SECOND_KEY": "key-two"}
    async with running_service(tmp_path, fake, ensemble=text, env=env) as service:
        events = await ask(service, fake)
        router_clients = len(service.resources.model._clients)  # type: ignore[attr-defined]

    assert events[-1].event == "done"
    by_agent = {call.messages[0]["content"]: call for call in fake.calls if call.model == "fake-ok"}
    a, b = by_agent["You are a."], by_agent["You are b."]
    assert a.headers["authorization"] == "Bearer key-one"
    assert a.headers["x-provider"] == "first"
    assert (a.body["temperature"], a.body["max_tokens"]) == (0.3, 77)
    assert b.headers["authorization"] == "Bearer key-two"
    assert b.headers["x-agent"] == "b"
    assert "x-provider" not in b.headers
    assert "temperature" not in b.body
    (summary,) = fake.calls_for("fake-summary")
    assert summary.headers["authorization"] == "Bearer key-one"
    # One pooled client per provider, shared by the agent and the summarizer of `first`.
    assert router_clients == 2


async def test_the_log_carries_the_cause_chain_with_message_and_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = upstream(fake_401=Behaviour(status=401))
    agents = {"ok": {"model": "fake-ok"}, "keyed": {"model": "fake-401"}}
    with caplog.at_level(logging.INFO):
        async with running_service(tmp_path, fake, ensemble=ensemble(agents)) as service:
            await ask(service, fake)

    (record,) = [r for r in caplog.records if r.getMessage().startswith("agent keyed failed")]
    assert record.levelno == logging.WARNING
    assert record.message_id == "msg-faults"  # type: ignore[attr-defined]
    assert record.agent == "keyed"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert type(error).__name__ == "UpstreamAuthFailed"
    # The provider's own text is kept for the operator, one link down the chain.
    assert SECRET_DETAIL_MARKER in str(error.__cause__)


async def test_the_mock_failure_example_shows_every_recovery_by_hand(tmp_path: Path) -> None:
    env = {
        "ENSEMBLE_FILE": str(MOCK_FAILURES_EXAMPLE),
        "MOCK_FIRST_TOKEN_MS": "10",
        "MOCK_TOKEN_MS": "1",
    }
    async with running_service(tmp_path, None, env=env) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)

    completed = {e["source"]: e for e in of(events, "agent.completed")}
    assert completed["steady"]["attempts"] == 1
    assert (completed["flaky"]["model"], completed["flaky"]["attempts"]) == ("mock:flaky", 2)
    assert (completed["down"]["model"], completed["down"]["attempts"]) == ("mock", 3)
    (cut,) = of(events, "agent.failed")
    assert (cut["source"], cut["error"]["code"]) == ("stuck", "agent_cut")
    (restarted,) = of(events, "summary.restarted")
    assert restarted["model"] == "mock"
    done = events[-1].data
    assert done["type"] == "done"
    assert done["agents"] == {"succeeded": 3, "failed": 0, "cut": 1}
    assert done["models"]["combine"] == "mock"
    # Every answer is the mock's, and says so: no real model's name, and no real price (a
    # fallback named gpt-4o-mini once showed the mock's answers at its dollars): the mock's
    # calls cost nothing.
    assert all(model.split(":")[0] == "mock" for model in done["models"].values())
    assert done["cost"]["total_usd"] == 0
    assert set(done["cost"]["members"].values()) == {0}
