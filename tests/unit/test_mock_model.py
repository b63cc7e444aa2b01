"""The mock LLM: deterministic, shows what it combined, streams with delays, cancellable."""

from __future__ import annotations

import time

import pytest
import trio
from trio.testing import MockClock

from service.errors import UpstreamError
from service.llm import ChatMessage, ChatRequest, MockChatModel
from service.llm.mock import CUT_AFTER_TOKENS, MockFault, mock_reply, split_tokens


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


def faulty(model: str, caller: str = "a") -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", "hi there"),), caller=caller)


@pytest.mark.parametrize(
    ("model", "code", "retry_after_s"),
    [
        ("mock:rate_limited", "upstream_rate_limited", 1.0),
        ("mock:unavailable", "upstream_unavailable", None),
        ("mock:bad_response", "upstream_bad_response", None),
        ("mock:auth_failed", "upstream_auth_failed", None),
    ],
)
async def test_a_fault_model_fails_like_a_provider_after_the_first_token_delay(
    model: str, code: str, retry_after_s: float | None, autojump_clock: MockClock
) -> None:
    mock = MockChatModel(first_token_delay_s=0.25)
    start = trio.current_time()
    with pytest.raises(UpstreamError) as caught:
        await mock.complete(faulty(model))
    assert trio.current_time() - start == pytest.approx(0.25)
    assert (caught.value.code, caught.value.retry_after_s) == (code, retry_after_s)
    # Like a provider's error: the detail is in the cause, for the logs only.
    assert isinstance(caught.value.__cause__, MockFault)
    assert model in str(caught.value.__cause__)
    assert model not in caught.value.public_message


async def test_a_stalling_model_never_answers(autojump_clock: MockClock) -> None:
    mock = MockChatModel()
    with trio.move_on_after(3600) as waited:
        await mock.complete(faulty("mock:stall"))
    assert waited.cancelled_caught
    with trio.move_on_after(3600) as waited:
        async with mock.stream(faulty("mock:stall")) as stream:
            async for _ in stream:
                pass
    assert waited.cancelled_caught


async def test_a_slow_model_answers_twenty_times_later(autojump_clock: MockClock) -> None:
    mock = MockChatModel(first_token_delay_s=0.25)
    start = trio.current_time()
    completion = await mock.complete(faulty("mock:slow"))
    assert completion.text
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_flaky_model_fails_every_other_call_per_caller(autojump_clock: MockClock) -> None:
    mock = MockChatModel()
    outcomes = []
    for caller in ("a", "a", "b", "a"):
        try:
            await mock.complete(faulty("mock:flaky", caller))
            outcomes.append("ok")
        except UpstreamError as error:
            outcomes.append(error.code)
    assert outcomes == [
        "upstream_unavailable",
        "ok",
        "upstream_unavailable",
        "upstream_unavailable",
    ]


async def test_a_cut_stream_breaks_after_three_tokens(autojump_clock: MockClock) -> None:
    mock = MockChatModel()
    received: list[str] = []

    async def read_all() -> None:
        async with mock.stream(faulty("mock:cut")) as stream:
            async for token in stream:
                received.append(token)

    with pytest.raises(UpstreamError) as caught:
        await read_all()
    assert len(received) == CUT_AFTER_TOKENS
    assert caught.value.code == "upstream_unavailable"


async def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    model = MockChatModel()
    call = ChatRequest(
        model="mock",
        messages=(ChatMessage("user", "Explain gravity like I am 5"),),
        caller="a",
        max_tokens=5,
    )
    whole = split_tokens(mock_reply(call))
    assert len(whole) > 5
    async with model.stream(call) as stream:
        streamed = [token async for token in stream]
    completion = await model.complete(call)
    assert streamed == whole[:5]
    assert stream.usage is not None
    assert (stream.usage.completion_tokens, stream.finish_reason) == (5, "length")
    assert completion.text == "".join(whole[:5])
    assert completion.usage is not None
    assert (completion.usage.completion_tokens, completion.finish_reason) == (5, "length")


async def test_an_answer_within_max_tokens_ends_with_stop() -> None:
    model = MockChatModel()
    call = request("a", "gravity?")
    roomy = ChatRequest(model="mock", messages=call.messages, caller="a", max_tokens=1000)
    async with model.stream(roomy) as stream:
        streamed = "".join([token async for token in stream])
    assert streamed == mock_reply(call)
    assert stream.finish_reason == "stop"
    assert (await model.complete(call)).finish_reason == "stop"


def test_a_question_of_a_long_run_of_digits_is_answered_at_once() -> None:
    """The arithmetic pattern was quadratic in a run of digits: 32,000 of them held the
    event loop for a minute."""
    digits = ChatRequest(model="m", messages=(ChatMessage("user", "7" * 32_000),), caller="a")
    started = time.monotonic()
    reply = mock_reply(digits)
    assert time.monotonic() - started < 0.5
    assert "The answer is" not in reply  # no arithmetic in it
    huge = ChatRequest(
        model="m", messages=(ChatMessage("user", f"{'9' * 5000} * {'9' * 5000}"),), caller="a"
    )
    assert "The answer is" not in mock_reply(huge)
    sum_ = ChatRequest(model="m", messages=(ChatMessage("user", "What is 12 + 30?"),), caller="a")
    assert mock_reply(sum_) == "The answer is 42."
