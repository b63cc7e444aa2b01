"""Any OpenAI client can use an ensemble as a model: the real openai SDK, sync and async,
streaming and not, against a real server on a real port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from service.auth.keys import issue_key
from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import RunningService, running_service

QUICK = {"MOCK_FIRST_TOKEN_MS": "5", "MOCK_TOKEN_MS": "1"}
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


def client(service: RunningService, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0)


async def test_models_list_every_ensemble_and_retrieve_one(tmp_path: Path) -> None:
    ensembles = tmp_path / "ensembles.toml"
    member = 'system_prompt = "x"\n'
    ensembles.write_text(
        'default = "fast"\n\n'
        + "\n".join(
            f'[[ensembles.{name}.agents]]\nname = "a"\n{member}\n'
            f'[ensembles.{name}.summarizer]\nname = "s"\n{member}'
            for name in ("fast", "careful")
        )
    )
    async with running_service(tmp_path, None, env={"ENSEMBLE_FILE": str(ensembles)}) as s:
        sdk = client(s)
        listed = await sdk.models.list()
        one = await sdk.models.retrieve("careful")
        with pytest.raises(openai.NotFoundError) as missing:
            await sdk.models.retrieve("nope")
    assert sorted(model.id for model in listed.data) == ["careful", "fast"]
    assert (one.id, one.object, one.owned_by) == ("careful", "model", "llm-fanout")
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


async def test_a_completion_carries_the_summary_usage_and_the_agents(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:
        completion = await client(s).chat.completions.create(model="default", messages=QUESTION)
        raw = await client(s).chat.completions.with_raw_response.create(
            model="default", messages=QUESTION
        )
    message = completion.choices[0].message
    assert message.content.startswith("Combining 2 answers.")  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "default"
    extra: dict[str, Any] = completion.model_extra or {}
    per_call = extra["fanout"]["usage"]
    assert set(per_call) == {"llm-1", "llm-2", "llm-combine"}
    assert completion.usage is not None
    assert completion.usage.total_tokens == sum(
        call["prompt_tokens"] + call["completion_tokens"] for call in per_call.values()
    )
    assert sorted(answer["agent"] for answer in extra["fanout"]["answers"]) == ["llm-1", "llm-2"]
    assert "[llm-1] answered" in (message.model_extra or {})["reasoning_content"]
    assert raw.http_response.status_code == 200
    assert raw.headers["X-Conversation-Id"].startswith("c_")
    assert raw.parse().choices[0].message.content


async def test_a_stream_is_chunks_with_one_finish_reason_usage_and_done(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:
        stream = await client(s).chat.completions.create(
            model="default",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert content.startswith("Combining 2 answers.")
    assert "[llm-2] answered" in reasoning
    assert finishes == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)


async def test_the_mock_answers_as_mock_and_stops_at_max_tokens_with_length(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:
        whole = await client(s).chat.completions.create(
            model="default", messages=QUESTION, max_tokens=5
        )
        stream = await client(s).chat.completions.create(
            model="default",
            messages=QUESTION,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    fanout: dict[str, Any] = (whole.model_extra or {})["fanout"]
    assert fanout["usage"]["llm-combine"]["completion_tokens"] == 5
    assert whole.choices[0].finish_reason == "length"
    assert fanout["models"] == {"llm-1": "mock", "llm-2": "mock", "llm-combine": "mock"}
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [reason for reason in reasons if reason is not None] == ["length"]
    finishing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    streamed_fanout: dict[str, Any] = (finishing.model_extra or {})["fanout"]
    assert streamed_fanout["usage"]["llm-combine"]["completion_tokens"] == 5
    assert set(streamed_fanout["models"].values()) == {"mock"}


async def test_the_sync_client_works_too(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:

        def use_sync() -> tuple[str, str]:
            sync = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)
            whole = sync.chat.completions.create(model="default", messages=QUESTION)
            streamed = "".join(
                chunk.choices[0].delta.content or ""
                for chunk in sync.chat.completions.create(
                    model="default", messages=QUESTION, stream=True
                )
                if chunk.choices
            )
            return whole.choices[0].message.content or "", streamed

        whole, streamed = await trio.to_thread.run_sync(use_sync)
    assert whole.startswith("Combining")
    assert streamed.startswith("Combining")


def reasoning_of(chunks: list[Any], field: str = "reasoning_content") -> str:
    return "".join(
        (c.choices[0].delta.model_extra or {}).get(field) or "" for c in chunks if c.choices
    )


async def test_a_stream_shows_each_agent_thinking_under_its_name_then_the_summary(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(tokens=("Light ", "scatters."), token_delay_s=0.02),
            "fake-b": Behaviour(tokens=("Short ", "waves."), token_delay_s=0.02),
        }
    )
    async with running_service(tmp_path, fake) as s:
        stream = await client(s).chat.completions.create(
            model="default", messages=QUESTION, stream=True
        )
        chunks = [chunk async for chunk in stream]
    reasoning = reasoning_of(chunks)
    for agent, text in (("alpha", "Light scatters."), ("beta", "Short waves.")):
        pieces = [
            (c.choices[0].delta.model_extra or {})["reasoning_content"]
            for c in chunks
            if (c.model_extra or {}).get("fanout", {}).get("event") == "agent.delta"
            and c.model_extra["fanout"]["agent"] == agent
        ]
        assert pieces, "the agents' text came as it was written"
        # Under its name: a heading whenever another agent's text came in between.
        heading = f"\n[{agent}] "
        assert pieces[0].startswith(heading)
        assert "".join(piece.removeprefix(heading) for piece in pieces) == text
    # Not repeated when it completes.
    assert reasoning.count("Light ") == 1
    assert "[alpha] answered (fake-a)" in reasoning
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content
    assert "<think>" not in content


async def test_openai_reasoning_think_puts_the_agents_work_in_think_tags_before_the_answer(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(tokens=("Light ", "scatters."))})
    env = {"OPENAI_REASONING": "think"}
    async with running_service(tmp_path, fake, env=env) as s:
        stream = await client(s).chat.completions.create(
            model="default", messages=QUESTION, stream=True
        )
        chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith("<think>\n")
    thinking, answer = content.removeprefix("<think>\n").split("</think>\n\n")
    alpha = [
        c.choices[0].delta.content or ""
        for c in chunks
        if (c.model_extra or {}).get("fanout", {}).get("event") == "agent.delta"
        and c.model_extra["fanout"]["agent"] == "alpha"
    ]
    assert "".join(alpha).replace("<think>\n", "").replace("\n[alpha] ", "") == "Light scatters."
    assert "[alpha] " in thinking
    assert answer
    assert "[alpha]" not in answer
    assert not reasoning_of(chunks)


async def test_openai_reasoning_off_streams_the_answer_alone(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(tokens=("Light ", "scatters."))})
    async with running_service(tmp_path, fake, env={"OPENAI_REASONING": "off"}) as s:
        stream = await client(s).chat.completions.create(
            model="default", messages=QUESTION, stream=True
        )
        chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content
    assert not reasoning_of(chunks)
    assert "[alpha]" not in content


async def test_history_and_system_messages_reach_every_member(tmp_path: Path) -> None:
    fake = FakeUpstream()
    async with running_service(tmp_path, fake) as s:
        await client(s).chat.completions.create(
            model="default",
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "What is a star?"},
                {"role": "assistant", "content": "A ball of plasma."},
                {"role": "user", "content": [{"type": "text", "text": "And a planet?"}]},
            ],
        )
    assert len(fake.calls) == 3
    for call in fake.calls:
        roles = [m["role"] for m in call.messages]
        assert roles == ["system", "system", "user", "assistant", "user"]
        assert "Answer in French." in call.messages[1]["content"]
        assert call.messages[2]["content"] == "What is a star?"
        assert call.messages[3]["content"] == "A ball of plasma."
    agent_call = fake.calls_for("fake-a")[0]
    assert agent_call.messages[-1]["content"] == "And a planet?"


async def test_the_history_is_the_newest_whole_exchanges_that_fit_as_for_a_stored_one(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream()
    # 30 characters: the newest exchange (6 + 12) fits, the one before it (6 + 12) does
    # not, and its answer, which alone would, is not kept without its question.
    async with running_service(tmp_path, fake, env={"HISTORY_MAX_CHARS": "30"}) as s:
        await client(s).chat.completions.create(
            model="default",
            messages=[
                {"role": "user", "content": "First?"},
                {"role": "assistant", "content": "First reply."},
                {"role": "user", "content": "Again?"},
                {"role": "assistant", "content": "Newest reply"},
                {"role": "user", "content": "Now?"},
            ],
        )
    sent = [m["content"] for m in fake.calls_for("fake-a")[0].messages[1:]]
    assert sent == ["Again?", "Newest reply", "Now?"]


async def test_max_tokens_caps_the_summary_only(tmp_path: Path) -> None:
    fake = FakeUpstream()
    async with running_service(tmp_path, fake) as s:
        await client(s).chat.completions.create(
            model="default", messages=QUESTION, max_completion_tokens=42
        )
    assert fake.calls_for("fake-summary")[0].body["max_tokens"] == 42
    assert "max_tokens" not in fake.calls_for("fake-a")[0].body


@asynccontextmanager
async def with_keys(
    tmp_path: Path, **env: str
) -> AsyncIterator[tuple[RunningService, dict[str, str]]]:
    async with running_service(tmp_path, None, env={"AUTH": "keys", **QUICK, **env}) as s:
        store = s.resources.store
        assert store is not None
        keys = {}
        for name, scopes in (("full", frozenset()), ("history", frozenset({"history"}))):
            keys[name], _ = await store.read(
                lambda c, scopes=scopes: issue_key(
                    c, user="u", tenant="t", role="user", scopes=scopes, expires_in=None, name=None
                )
            )
        yield s, keys


async def test_each_error_status_is_the_sdks_own_exception(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text("[default]\nrequests_per_minute = 1\nburst = 1\n")
    async with with_keys(tmp_path, LIMITS_FILE=str(limits)) as (s, keys):
        full, history_only = client(s, keys["full"]), client(s, keys["history"])
        cases: list[tuple[type[Exception], Any]] = [
            (openai.AuthenticationError, client(s, "fo_wrong").models.list()),
            (openai.PermissionDeniedError, history_only.models.list()),
            (
                openai.BadRequestError,
                full.chat.completions.create(model="default", messages=QUESTION, n=2),
            ),
            (
                openai.NotFoundError,
                full.chat.completions.create(model="nope", messages=QUESTION),
            ),
        ]
        results = []
        for expected, call in cases:
            with pytest.raises(expected) as raised:
                await call
            results.append(raised.value)
        ok = await full.chat.completions.create(
            model="default", messages=QUESTION, metadata={"message_id": "m-1"}
        )
        with pytest.raises(openai.RateLimitError) as limited:
            await full.chat.completions.create(model="default", messages=QUESTION)
    assert ok.choices[0].message.content
    assert results[0].status_code == 401  # type: ignore[attr-defined]
    assert results[1].body["code"] == "forbidden"  # type: ignore[attr-defined]
    assert results[2].body["param"] == "n"  # type: ignore[attr-defined]
    assert limited.value.response.headers["Retry-After"] == "60"
    assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]


async def test_a_message_id_again_replays_or_runs_its_next_version_and_413_and_503(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:
        sdk = client(s)
        first = await sdk.chat.completions.with_raw_response.create(
            model="default", messages=QUESTION, metadata={"message_id": "m-1"}
        )
        replayed = await sdk.chat.completions.with_raw_response.create(
            model="default", messages=QUESTION, metadata={"message_id": "m-1"}
        )
        other = await sdk.chat.completions.with_raw_response.create(
            model="default",
            messages=[{"role": "user", "content": "Something else?"}],
            metadata={"message_id": "m-1"},
        )
        with pytest.raises(openai.APIStatusError) as too_large:
            await sdk.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "x" * 1_100_000}]
            )
        s.resources.lifecycle.begin_draining()
        with pytest.raises(openai.InternalServerError) as draining:
            await sdk.chat.completions.create(model="default", messages=QUESTION)
    versions = [r.headers["X-Message-Version"] for r in (first, replayed, other)]
    assert versions == ["1", "1", "2"]
    assert replayed.headers["X-Replayed"] == "true"
    answer = first.parse().choices[0].message.content
    assert replayed.parse().choices[0].message.content == answer
    assert "X-Replayed" not in other.headers
    assert too_large.value.status_code == 413
    assert draining.value.status_code == 503
    assert draining.value.body["code"] == "shutting_down"  # type: ignore[index]


async def test_a_failure_after_streaming_began_is_raised_by_the_sdk(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(status=500), "fake-b": Behaviour(status=500)})
    async with running_service(tmp_path, fake) as s:
        stream = await client(s).chat.completions.create(
            model="default", messages=QUESTION, stream=True
        )
        with pytest.raises(openai.APIError) as failed:
            async for _ in stream:
                pass
        with pytest.raises(openai.APIStatusError) as whole:
            await client(s).chat.completions.create(model="default", messages=QUESTION)
    assert "no agent" in str(failed.value)
    assert "upstream-secret-detail" not in str(failed.value)
    assert whole.value.status_code == 502
    assert whole.value.body["code"] == "no_agent_succeeded"  # type: ignore[index]


async def test_hanging_up_a_stream_closes_every_upstream_call(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
    async with running_service(tmp_path, fake) as s:
        stream = await client(s).chat.completions.create(
            model="default", messages=QUESTION, stream=True
        )
        async for chunk in stream:
            if chunk.choices and "thinking" in (
                (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
            ):
                break
        with trio.fail_after(5):
            calls = [await fake.wait_for_call("fake-a"), await fake.wait_for_call("fake-b")]
        await stream.close()
        with trio.fail_after(2):
            for call in calls:
                await call.ended.wait()
    assert [call.outcome for call in calls] == ["disconnected", "disconnected"]


async def test_unknown_fields_are_ignored_and_non_text_content_is_refused(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env=QUICK) as s:
        ok = await client(s).chat.completions.create(
            model="default",
            messages=QUESTION,
            extra_body={"some_new_field": {"x": 1}, "temperature": 0.1, "user": "me"},
        )
        with pytest.raises(openai.BadRequestError) as image:
            await client(s).chat.completions.create(
                model="default",
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ],
            )
    assert ok.choices[0].message.content
    assert image.value.body["param"] == "messages[0].content"  # type: ignore[index]
    assert json.dumps(image.value.body)  # the OpenAI shape, serialisable


async def test_a_debates_rounds_stream_as_reasoning_and_a_votes_choice_as_the_content(
    tmp_path: Path,
) -> None:
    ensembles = tmp_path / "ensembles.toml"
    agents = "".join(
        f'[[ensembles.{name}.agents]]\nname = "{agent}"\nsystem_prompt = "x"\n'
        for name in ("debate", "vote")
        for agent in ("a", "b")
    )
    ensembles.write_text(
        'default = "debate"\n'
        '[ensembles.debate]\nstrategy = "debate"\n'
        "[ensembles.debate.deliberation]\nrounds = 1\n"
        '[ensembles.debate.summarizer]\nname = "s"\nsystem_prompt = "x"\n'
        '[ensembles.vote]\nstrategy = "vote"\n[ensembles.vote.deliberation]\nvote = "similar"\n'
        + agents
    )
    async with running_service(tmp_path, None, env={**QUICK, "ENSEMBLE_FILE": str(ensembles)}) as s:
        debate = [
            chunk
            async for chunk in await client(s).chat.completions.create(
                model="debate", messages=QUESTION, stream=True
            )
        ]
        voted = await client(s).chat.completions.create(model="vote", messages=QUESTION)
    thinking = reasoning_of(debate)
    # The first answers, then each agent's revision under its name and round.
    assert "--- answer, round 0 ---" in thinking
    assert "--- revise, round 1 ---" in thinking
    assert "[a · revise 1] (a, round 1) Having read 1 other answer(s)" in thinking
    assert "".join(c.choices[0].delta.content or "" for c in debate if c.choices).startswith(
        "Combining 2 answers."
    )
    message_extra = voted.choices[0].message.model_extra or {}
    assert "[vote] similar tally:" in message_extra["reasoning_content"]
    answers = (voted.model_extra or {})["fanout"]["answers"]
    assert {a["agent"] for a in answers} == {"a", "b"}
    assert (voted.choices[0].message.content or "") in {a["text"] for a in answers}


async def test_the_usage_carries_the_cost_in_dollars_where_every_price_is_known(
    tmp_path: Path,
) -> None:
    ensemble = tmp_path / "priced.toml"
    ensemble.write_text(
        '[[agents]]\nname = "a"\nsystem_prompt = "x"\n'
        '[[agents]]\nname = "b"\nsystem_prompt = "x"\n'
        '[summarizer]\nname = "s"\nsystem_prompt = "x"\n'
        "[prices.mock]\ninput_per_million = 2.0\noutput_per_million = 8.0\n"
    )
    async with running_service(tmp_path, None, env={**QUICK, "ENSEMBLE_FILE": str(ensemble)}) as s:
        completion = await client(s).chat.completions.create(model="default", messages=QUESTION)
    assert completion.usage is not None
    per_call = (completion.model_extra or {})["fanout"]["usage"]
    expected = sum(
        call["prompt_tokens"] * 2.0 / 1e6 + call["completion_tokens"] * 8.0 / 1e6
        for call in per_call.values()
    )
    assert (completion.usage.model_extra or {})["cost"] == pytest.approx(expected, rel=1e-6)
    assert expected > 0
    # Each agent's answer says what its call cost; the summarizer's is the rest.
    answers = (completion.model_extra or {})["fanout"]["answers"]
    for answer in answers:
        call = per_call[answer["agent"]]
        assert answer["cost_usd"] == pytest.approx(
            call["prompt_tokens"] * 2.0 / 1e6 + call["completion_tokens"] * 8.0 / 1e6
        )
