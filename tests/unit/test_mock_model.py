"""The mock LLM: deterministic, shows what it combined, streams with delays, cancellable."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from service.llm import ChatMessage, ChatRequest, MockChatModel
from service.llm.mock import mock_reply, split_tokens


def request(caller: str, prompt: str, system: str = "be brief") -> ChatRequest:
    return ChatRequest(
        model="any",
        messages=(ChatMessage("system", system), ChatMessage("user", prompt)),
        caller=caller,
    )


def test_the_same_prompt_and_agent_always_get_the_same_answer() -> None:
    assert mock_reply(request("a", "gravity?")) == mock_reply(request("a", "gravity?"))


def test_the_answer_depends_on_the_agent_and_the_prompt() -> None:
    answers = {
        mock_reply(request(caller, prompt))
        for caller in ("a", "b")
        for prompt in ("gravity?", "tides?")
    }
    assert len(answers) == 4
    assert mock_reply(request("llm-7", "x")).startswith("(llm-7) ")


def test_a_summary_prompt_gets_the_opening_sentence_of_every_answer() -> None:
    first = mock_reply(request("a", "gravity?"))
    second = mock_reply(request("b", "gravity?"))
    prompt = f'<answer from="a">\n{first}\n</answer>\n\n<answer from="b">\n{second}\n</answer>'
    summary = mock_reply(request("sum", prompt))
    assert summary.startswith("Combining 2 answers.")
    assert f"From a: {first.split('. ')[0]}." in summary
    assert f"From b: {second.split('. ')[0]}." in summary


def test_tokens_join_back_to_the_text() -> None:
    text = "one two\nthree  four"
    assert "".join(split_tokens(text)) == text
    assert len(split_tokens(text)) == 4


async def test_streaming_takes_the_configured_delays(autojump_clock: MockClock) -> None:
    model = MockChatModel(first_token_delay_s=0.5, token_delay_s=0.1)
    call = request("a", "gravity?")
    tokens = split_tokens(mock_reply(call))
    start = trio.current_time()
    arrivals = []
    async with model.stream(call) as stream:
        async for token in stream:
            arrivals.append((round(trio.current_time() - start, 6), token))
        assert stream.usage is not None
        assert stream.usage.completion_tokens == len(tokens)
    assert [t for _, t in arrivals] == tokens
    assert arrivals[0][0] == pytest.approx(0.5)
    assert arrivals[-1][0] == pytest.approx(0.5 + 0.1 * (len(tokens) - 1))


async def test_complete_takes_as_long_as_streaming_and_can_be_cancelled(
    autojump_clock: MockClock,
) -> None:
    model = MockChatModel(first_token_delay_s=1, token_delay_s=1)
    start = trio.current_time()
    with trio.move_on_after(2) as scope:
        await model.complete(request("a", "gravity?"))
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(2)

    model = MockChatModel(first_token_delay_s=0.2, token_delay_s=0.01)
    completion = await model.complete(request("a", "gravity?"))
    assert completion.text == mock_reply(request("a", "gravity?"))
