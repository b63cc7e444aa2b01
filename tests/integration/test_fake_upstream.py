"""The fake upstream, exercised over real sockets through the official openai SDK."""

from __future__ import annotations

import httpx2
import openai
import pytest
import trio

from scripts.fake_upstream import (
    SECRET_DETAIL_MARKER,
    Behaviour,
    CallRecord,
    FakeUpstream,
    base_url,
    serve_fake_upstream,
    split_tokens,
)

# How quickly a hang-up must show up in the record.
PROMPT_S = 0.5


def make_client(binds: list[str]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url(binds),
        api_key="test",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(http2=False),
    )


async def wait_for_call(fake: FakeUpstream, model: str) -> CallRecord:
    with trio.fail_after(2):
        return await fake.wait_for_call(model)


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
            with trio.move_on_after(0.3) as call_scope:
                await client.chat.completions.create(
                    model="stuck", messages=[{"role": "user", "content": "hello?"}]
                )
            cancelled_at = trio.current_time()
            assert call_scope.cancelled_caught

            record = await wait_for_call(fake, "stuck")
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
            with trio.move_on_after(0.3):
                await client.chat.completions.create(
                    model="sleepy", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            cancelled_at = trio.current_time()

            record = await wait_for_call(fake, "sleepy")
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
