"""The fake upstream, exercised over real sockets through the official openai SDK."""

from __future__ import annotations

import dataclasses
import json
import ssl
from functools import partial
from typing import Any

import httpx2
import openai
import pytest
import trio

from tests.fake_upstream import (
    BEHAVIOUR_HEADER,
    SECRET_DETAIL_MARKER,
    Behaviour,
    CallRecord,
    FakeUpstream,
    Outcome,
    _cli_upstream,
    base_url,
    serve_fake_upstream,
    split_tokens,
)

# How quickly a hang-up must show up in the record.
PROMPT_S = 0.5
QUESTION = [{"role": "user", "content": "one two three four"}]
# Loading the CA bundle costs ~50 ms per client, most of this file's run time; the fake speaks
# plain HTTP, so every client can share one context.
TLS_CONTEXT = ssl.create_default_context()


def make_client(binds: list[str]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url(binds),
        api_key="test",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(http2=False, verify=TLS_CONTEXT),
    )


async def connect(nursery: trio.Nursery, fake: FakeUpstream) -> openai.AsyncOpenAI:
    """Serve `fake` until the test ends; the caller closes the client."""
    binds = await nursery.start(serve_fake_upstream, fake)
    return make_client(binds)


async def ask(client: openai.AsyncOpenAI, model: str, **options: Any) -> str:
    completion = await client.chat.completions.create(model=model, messages=QUESTION, **options)
    return completion.choices[0].message.content or ""


async def ask_streaming(
    client: openai.AsyncOpenAI, model: str, received: list[str] | None = None, **options: Any
) -> str:
    """The streamed text; `received` collects the tokens even if the stream then fails."""
    received = [] if received is None else received
    stream = await client.chat.completions.create(
        model=model, messages=QUESTION, stream=True, **options
    )
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content is not None:
                received.append(chunk.choices[0].delta.content)
    return "".join(received)


async def ask_either(client: openai.AsyncOpenAI, model: str, stream: bool, **options: Any) -> str:
    if stream:
        return await ask_streaming(client, model, **options)
    return await ask(client, model, **options)


async def wait_for_call(fake: FakeUpstream, model: str) -> CallRecord:
    with trio.fail_after(2):
        return await fake.wait_for_call(model)


async def outcomes(fake: FakeUpstream) -> list[Outcome]:
    """Every call's outcome, once each has ended (a client's hang-up lands a moment later)."""
    with trio.fail_after(PROMPT_S):
        for call in fake.calls:
            await call.ended.wait()
    return [call.outcome for call in fake.calls]


def test_split_tokens_keeps_whitespace() -> None:
    text = "  Hello,  world\nsecond line\n\n end "
    tokens = split_tokens(text)
    assert "".join(tokens) == text
    assert tokens[1] == "Hello,  "
    assert "world\n" in tokens


async def test_non_streaming_reply_and_usage() -> None:
    fake = FakeUpstream({"m1": Behaviour(reply="Hello there, world")})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            completion = await client.chat.completions.create(
                model="m1",
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "one two three"},
                ],
            )
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert completion.object == "chat.completion"
    assert completion.model == "m1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello there, world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == 8

    (record,) = fake.calls
    assert record.outcome == "completed"
    assert record.ended_at is not None
    assert record.ended_at >= record.started_at
    assert record.stream is False
    assert record.messages[-1] == {"role": "user", "content": "one two three"}
    assert record.headers["authorization"] == "Bearer test"
    assert fake.open_calls() == []


async def test_default_reply_derives_from_model_and_last_user_message() -> None:
    fake = FakeUpstream()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            completion = await client.chat.completions.create(
                model="anything",
                messages=[
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "first answer"},
                    {"role": "user", "content": "x" * 100},
                ],
            )
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert completion.choices[0].message.content == "anything answers: " + "x" * 60
    assert [call.model for call in fake.calls] == ["anything"]


async def test_streaming_tokens_reassemble_and_usage_arrives() -> None:
    tokens = ("Line one\n", "line", " two\n\n", "end")
    fake = FakeUpstream({"streamer": Behaviour(tokens=tokens, token_delay_s=0.01)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            stream = await client.chat.completions.create(
                model="streamer",
                messages=[{"role": "user", "content": "go"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content is not None]
    assert [c.choices[0].delta.content for c in content_chunks] == list(tokens)
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == "".join(tokens)
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1

    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].choices == []
    assert usage_chunks[0].usage is not None
    assert usage_chunks[0].usage.completion_tokens == len(tokens)
    assert usage_chunks[0].usage.prompt_tokens == 1

    (record,) = fake.calls
    assert record.stream is True
    assert record.outcome == "completed"


async def test_streaming_without_include_usage_sends_no_usage() -> None:
    fake = FakeUpstream({"m": Behaviour(reply="a b c")})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "go"}], stream=True
            )
            chunks = [chunk async for chunk in stream]
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a b c"


async def test_error_status_surfaces_as_sdk_error_with_raw_detail() -> None:
    fake = FakeUpstream({"broken": Behaviour(status=500)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(
                    model="broken", messages=[{"role": "user", "content": "hi"}]
                )
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert caught.value.status_code == 500
    assert f"{SECRET_DETAIL_MARKER}: broken failed" in caught.value.message
    (record,) = fake.calls
    assert record.outcome == "completed"


async def test_models_list_and_unknown_route() -> None:
    fake = FakeUpstream({"alpha": Behaviour(), "beta": Behaviour()})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            models = [model.id async for model in client.models.list()]
        finally:
            await client.close()
        async with httpx2.AsyncClient() as http:
            missing = await http.get(binds[0] + "/v1/nope")
        nursery.cancel_scope.cancel()

    assert models == ["alpha", "beta"]
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert fake.calls == []


async def test_closing_stream_early_marks_call_disconnected() -> None:
    tokens = tuple(f"token{i} " for i in range(20))
    fake = FakeUpstream({"slowpoke": Behaviour(tokens=tokens, token_delay_s=5.0)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            stream = await client.chat.completions.create(
                model="slowpoke", messages=[{"role": "user", "content": "go"}], stream=True
            )
            async with stream:
                first = await stream.__anext__()
            closed_at = trio.current_time()
        finally:
            await client.close()

        assert first.choices[0].delta.content == "token0 "
        (record,) = fake.calls
        with trio.fail_after(PROMPT_S):
            await record.ended.wait()
        nursery.cancel_scope.cancel()

    assert record.outcome == "disconnected"
    assert record.ended_at is not None
    assert record.ended_at - closed_at < PROMPT_S
    assert fake.open_calls() == []


async def test_cancelled_stalled_call_marks_call_disconnected() -> None:
    fake = FakeUpstream({"stuck": Behaviour(stall=True)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            async with trio.open_nursery() as call_nursery:
                call_nursery.start_soon(partial(ask, client, "stuck"))
                record = await wait_for_call(fake, "stuck")
                call_nursery.cancel_scope.cancel()
            cancelled_at = trio.current_time()

            with trio.fail_after(PROMPT_S):
                await record.ended.wait()
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert record.outcome == "disconnected"
    assert record.ended_at is not None
    assert record.ended_at - cancelled_at < PROMPT_S
    assert fake.open_calls() == []


async def test_cancelled_stream_during_first_token_delay_marks_call_disconnected() -> None:
    fake = FakeUpstream({"sleepy": Behaviour(first_token_delay_s=30.0)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = make_client(binds)
        try:
            async with trio.open_nursery() as call_nursery:
                call_nursery.start_soon(partial(ask_streaming, client, "sleepy"))
                record = await wait_for_call(fake, "sleepy")
                call_nursery.cancel_scope.cancel()
            cancelled_at = trio.current_time()

            with trio.fail_after(PROMPT_S):
                await record.ended.wait()
        finally:
            await client.close()
        nursery.cancel_scope.cancel()

    assert record.outcome == "disconnected"
    assert record.ended_at is not None
    assert record.ended_at - cancelled_at < PROMPT_S


async def test_server_shutdown_closes_open_records() -> None:
    fake = FakeUpstream({"stuck": Behaviour(stall=True)})
    client_failed = trio.Event()

    async def call_and_note_failure(client: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(
                model="stuck", messages=[{"role": "user", "content": "hi"}]
            )
        client_failed.set()

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as server_nursery:
            binds = await server_nursery.start(serve_fake_upstream, fake)
            client = make_client(binds)
            outer.start_soon(call_and_note_failure, client)
            record = await wait_for_call(fake, "stuck")
            assert fake.open_calls() == [record]
            server_nursery.cancel_scope.cancel()
        with trio.fail_after(2):
            await client_failed.wait()
        await client.close()

    assert record.outcome == "disconnected"
    assert fake.open_calls() == []


def test_behaviour_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="cut_after_tokens"):
        Behaviour(cut_after_tokens=-1)
    with pytest.raises(ValueError, match="fail_first"):
        Behaviour(fail_first=-1)


async def test_429_passes_retry_after_to_the_rate_limit_error(nursery: trio.Nursery) -> None:
    fake = FakeUpstream(
        {"limited": Behaviour(status=429, retry_after="0.2"), "broken": Behaviour(status=500)}
    )
    async with await connect(nursery, fake) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await ask(client, "limited")
        with pytest.raises(openai.RateLimitError) as limited_stream:
            await ask_streaming(client, "limited")
        with pytest.raises(openai.InternalServerError) as broken:
            await ask(client, "broken")

    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "0.2"
    assert limited_stream.value.response.headers["retry-after"] == "0.2"
    assert isinstance(limited.value.body, dict)
    assert limited.value.body["type"] == "rate_limit_error"
    assert "retry-after" not in broken.value.response.headers
    assert await outcomes(fake) == ["completed"] * 3


async def test_malformed_answer_raises_json_decode_error(nursery: trio.Nursery) -> None:
    fake = FakeUpstream({"garbled": Behaviour(malformed=True)})
    received: list[str] = []
    async with await connect(nursery, fake) as client:
        # The SDK neither wraps nor validates a body it cannot parse: json's own error escapes,
        # from create() for a whole answer and from the first iteration of a stream.
        with pytest.raises(json.JSONDecodeError):
            await ask(client, "garbled")
        with pytest.raises(json.JSONDecodeError):
            await ask_streaming(client, "garbled", received)

    assert received == []
    assert await outcomes(fake) == ["completed", "completed"]
    assert fake.open_calls() == []


async def test_cut_stream_delivers_some_tokens_then_a_connection_error(
    nursery: trio.Nursery,
) -> None:
    tokens = ("a ", "b ", "c ", "d ", "e")
    fake = FakeUpstream({"cut": Behaviour(tokens=tokens, cut_after_tokens=2)})
    received: list[str] = []
    async with await connect(nursery, fake) as client:
        with pytest.raises(openai.APIConnectionError) as stream_cut:
            await ask_streaming(client, "cut", received)
        with pytest.raises(openai.APIConnectionError) as whole_cut:
            await ask(client, "cut")

    assert received == ["a ", "b "]
    # A clean end of stream would have raised nothing; the SDK wraps httpx2's complaint.
    assert isinstance(stream_cut.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(stream_cut.value.__cause__)
    assert isinstance(whole_cut.value.__cause__, httpx2.RemoteProtocolError)
    assert "without sending a response" in str(whole_cut.value.__cause__)
    assert await outcomes(fake) == ["cut", "cut"]


async def test_reset_aborts_the_connection_with_a_rst(nursery: trio.Nursery) -> None:
    fake = FakeUpstream({"reset": Behaviour(reset=True)})
    async with await connect(nursery, fake) as client:
        with pytest.raises(openai.APIConnectionError) as whole:
            await ask(client, "reset")
        with pytest.raises(openai.APIConnectionError) as streamed:
            await ask_streaming(client, "reset")

    for caught in (whole, streamed):
        # ECONNRESET, not the "server disconnected" a plain close (FIN) would give.
        assert isinstance(caught.value.__cause__, httpx2.ReadError)
        assert "reset by peer" in str(caught.value.__cause__)
    assert await outcomes(fake) == ["reset", "reset"]
    assert fake.open_calls() == []


@pytest.mark.parametrize(
    ("fault", "stream", "error", "failed_outcome", "client_timeout_s"),
    [
        pytest.param(Behaviour(status=500), False, openai.InternalServerError, "completed", None),
        pytest.param(
            Behaviour(status=429, retry_after="0"), True, openai.RateLimitError, "completed", None
        ),
        pytest.param(Behaviour(malformed=True), True, json.JSONDecodeError, "completed", None),
        pytest.param(Behaviour(malformed=True), False, json.JSONDecodeError, "completed", None),
        pytest.param(Behaviour(cut_after_tokens=1), True, openai.APIConnectionError, "cut", None),
        pytest.param(Behaviour(cut_after_tokens=1), False, openai.APIConnectionError, "cut", None),
        pytest.param(Behaviour(reset=True), False, openai.APIConnectionError, "reset", None),
        # Long enough for the request to reach the fake (and count) on a loaded machine.
        pytest.param(Behaviour(stall=True), False, openai.APITimeoutError, "disconnected", 0.5),
    ],
    ids=[
        "500",
        "429-stream",
        "malformed-stream",
        "malformed",
        "cut-stream",
        "cut",
        "reset",
        "stall",
    ],
)
async def test_fail_first_fails_that_many_calls_then_answers(
    nursery: trio.Nursery,
    fault: Behaviour,
    stream: bool,
    error: type[Exception],
    failed_outcome: Outcome,
    client_timeout_s: float | None,
) -> None:
    fake = FakeUpstream({"flaky": dataclasses.replace(fault, reply="fine now", fail_first=2)})
    # A fault that outlived fail_first would stall the test instead of failing it.
    with trio.fail_after(5):
        async with await connect(nursery, fake) as client:
            for _ in range(2):
                with pytest.raises(error):
                    await ask_either(client, "flaky", stream, timeout=client_timeout_s)
            assert await ask_either(client, "flaky", stream) == "fine now"
            # Closed by the time the client has the whole answer, not a moment later.
            assert fake.open_calls() == []
            assert await ask_either(client, "flaky", stream) == "fine now"

    assert fake.attempts("flaky") == 4
    assert await outcomes(fake) == [failed_outcome, failed_outcome, "completed", "completed"]


async def test_header_picks_the_behaviour_whatever_the_model(nursery: trio.Nursery) -> None:
    fake = FakeUpstream({"m": Behaviour(reply="as m"), "down": Behaviour(status=503)})
    async with await connect(nursery, fake) as client:
        with pytest.raises(openai.InternalServerError) as down:
            await ask(client, "m", extra_headers={BEHAVIOUR_HEADER: "down"})
        assert await ask(client, "m") == "as m"
        assert await ask(client, "other") == "other answers: one two three four"
        with pytest.raises(openai.BadRequestError) as unknown:
            await ask(client, "m", extra_headers={BEHAVIOUR_HEADER: "nope"})

    assert down.value.status_code == 503
    assert "'nope'" in unknown.value.message
    assert "m, down" in unknown.value.message
    # The refused call is not recorded: it never reached a behaviour.
    assert [(call.model, call.behaviour, call.outcome) for call in fake.calls] == [
        ("m", "down", "completed"),
        ("m", "m", "completed"),
        ("other", "", "completed"),
    ]
    assert fake.attempts("m") == 2
    assert fake.calls[0].headers[BEHAVIOUR_HEADER] == "down"


async def test_replies_by_prompt_answer_by_what_the_messages_say(nursery: trio.Nursery) -> None:
    judge = Behaviour(
        reply="an answer",
        tokens=("an ", "answer"),
        replies_by_prompt=(("RANK", "ranked: A, B"), ("CHOOSE", "chose one")),
    )
    fake = FakeUpstream({"judge": judge})

    async def reply(system: str, user: str, stream: bool) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if not stream:
            completion = await client.chat.completions.create(model="judge", messages=messages)
            return completion.choices[0].message.content or ""
        tokens = []
        chunks = await client.chat.completions.create(model="judge", messages=messages, stream=True)
        async with chunks:
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    tokens.append(chunk.choices[0].delta.content)
        return "|".join(tokens)

    async with await connect(nursery, fake) as client:
        assert await reply("Be brief.", "Please RANK these.", stream=False) == "ranked: A, B"
        # Any message counts, the system prompt too; a stream splits the reply into words.
        assert await reply("CHOOSE the best.", "Which?", stream=True) == "chose |one"
        # The first pair that matches wins.
        assert await reply("CHOOSE", "and RANK", stream=False) == "ranked: A, B"
        # Neither: the behaviour's own reply and tokens.
        assert await reply("Be brief.", "What is it?", stream=False) == "an answer"
        assert await reply("Be brief.", "What is it?", stream=True) == "an |answer"

    assert [call.outcome for call in fake.calls] == ["completed"] * 5
    with pytest.raises(ValueError, match="pairs"):
        Behaviour(replies_by_prompt=(("only a substring",),))  # type: ignore[arg-type]


async def test_fail_first_counts_calls_per_behaviour_not_per_model(
    nursery: trio.Nursery,
) -> None:
    once = Behaviour(status=500, fail_first=1)
    fake = FakeUpstream({"flaky": once, "also-flaky": once}, default=once)
    pick_flaky = {BEHAVIOUR_HEADER: "flaky"}
    async with await connect(nursery, fake) as client:
        with pytest.raises(openai.InternalServerError):
            await ask(client, "a", extra_headers=pick_flaky)
        await ask(client, "b", extra_headers=pick_flaky)
        await ask(client, "flaky")
        with pytest.raises(openai.InternalServerError):
            await ask(client, "also-flaky")
        # Every model without a behaviour of its own shares the default's count.
        with pytest.raises(openai.InternalServerError):
            await ask(client, "x")
        await ask(client, "y")

    assert [call.behaviour for call in fake.calls] == ["flaky"] * 3 + ["also-flaky", "", ""]
    assert fake.open_calls() == []


async def test_cli_models_show_each_fault(nursery: trio.Nursery) -> None:
    fake = _cli_upstream(first_token_delay_s=0.0, token_delay_s=0.0)
    raised: dict[str, type[Exception] | None] = {}
    cut_tokens: list[str] = []
    async with await connect(nursery, fake) as client:
        for model in ("fake-fast", "fake-error", "fake-401", "fake-malformed", "fake-reset"):
            try:
                await ask(client, model)
            except Exception as error:
                raised[model] = type(error)
            else:
                raised[model] = None
        with pytest.raises(openai.RateLimitError) as limited:
            await ask(client, "fake-429")
        with pytest.raises(openai.APIConnectionError):
            await ask_streaming(client, "fake-cut", cut_tokens)
        with pytest.raises(openai.InternalServerError):
            await ask(client, "fake-flaky")
        assert await ask(client, "fake-flaky") == "fake-flaky answers: one two three four"

    assert raised == {
        "fake-fast": None,
        "fake-error": openai.InternalServerError,
        "fake-401": openai.AuthenticationError,
        "fake-malformed": json.JSONDecodeError,
        "fake-reset": openai.APIConnectionError,
    }
    assert limited.value.response.headers["retry-after"] == "1"
    assert len(cut_tokens) == 3
    assert fake.open_calls() == []


async def test_shutdown_trigger_closes_idle_connections_without_waiting() -> None:
    fake = FakeUpstream()
    stop = trio.Event()
    with trio.fail_after(2):
        async with trio.open_nursery() as server_nursery:
            binds = await server_nursery.start(
                partial(serve_fake_upstream, fake, shutdown_trigger=stop.wait)
            )
            client = make_client(binds)
            # Leaves a keep-alive connection idle in the client's pool.
            await ask(client, "m")
            stop.set()
            stop_asked_at = trio.current_time()
        stopped_after = trio.current_time() - stop_asked_at

    async with client:
        with pytest.raises(openai.APIConnectionError):
            await ask(client, "m")
    # The idle connection would otherwise hold shutdown for the whole graceful_timeout (0.5 s).
    assert stopped_after < 0.3
    assert fake.open_calls() == []
