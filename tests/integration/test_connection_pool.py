"""The upstream connection pool, against the fake upstream over real sockets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore2
import httpx2
import pytest
import trio

from service.llm import ChatMessage, ChatRequest
from service.llm.openai_model import OpenAIChatModel
from service.llm.pool import CoalescedWrites, FlatConnectionPool, PooledTransport
from service.llm.request_calls import REQUEST_CALLS, RequestCalls
from tests.fake_upstream import Behaviour, FakeUpstream, base_url, serve_fake_upstream

# How long a call that should be waiting is given to show it is not.
SETTLE_S = 0.3
BODY = {"model": "fast", "messages": [{"role": "user", "content": "hello there"}]}


def fake() -> FakeUpstream:
    return FakeUpstream(
        {
            "fast": Behaviour(),
            "stall": Behaviour(stall=True),
            # Answers at once, then takes an hour per token: holds its connection.
            "held": Behaviour(token_delay_s=3600),
        }
    )


@asynccontextmanager
async def pooled_client(
    upstream: FakeUpstream, *, max_connections: int, pool_timeout_s: float = 5.0
) -> AsyncIterator[tuple[httpx2.AsyncClient, FlatConnectionPool]]:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, upstream)
        transport = PooledTransport(name="fake", max_connections=max_connections)
        client = httpx2.AsyncClient(
            base_url=base_url(binds),
            transport=transport,
            timeout=httpx2.Timeout(5.0, pool=pool_timeout_s),
        )
        try:
            yield client, transport.pool
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


async def post(client: httpx2.AsyncClient, model: str = "fast") -> httpx2.Response:
    response = await client.post("/chat/completions", json={**BODY, "model": model})
    response.raise_for_status()
    return response


async def test_calls_one_after_another_share_one_connection() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=10) as (client, pool):
        for _ in range(3):
            await post(client)
        assert len({call.client for call in upstream.calls}) == 1
        assert pool.open_connections == 1
        assert pool.idle_connections == 1


async def test_concurrent_calls_each_get_a_connection_and_all_come_back() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=10) as (client, pool):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(post, client)
        assert len(upstream.calls) == 5
        assert pool.open_connections == pool.idle_connections
        assert 1 <= pool.open_connections <= 5


async def test_a_full_pool_makes_calls_wait_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = fake()
    caplog.set_level(logging.WARNING, logger="service.llm.pool")
    async with pooled_client(upstream, max_connections=2) as (client, pool):
        async with trio.open_nursery() as nursery, trio.open_nursery() as holders:

            async def hold_a_connection(held: trio.Event) -> None:
                held_call = BODY | {"model": "held", "stream": True}
                async with client.stream("POST", "/chat/completions", json=held_call):
                    held.set()
                    await trio.sleep_forever()

            for held in [trio.Event(), trio.Event()]:
                holders.start_soon(hold_a_connection, held)
                await held.wait()
            nursery.start_soon(post, client)
            await trio.sleep(SETTLE_S)
            # The third call has not reached the upstream: both connections are taken.
            assert len(upstream.calls) == 2
            assert "all 2 connections are busy" in caplog.text
            assert "fake" in caplog.text
            holders.cancel_scope.cancel()
        # Once the held calls ended, the waiting one went through.
        assert [call.outcome for call in upstream.calls_for("fast")] == ["completed"]
        assert pool.open_connections <= 2


async def test_a_call_that_waits_longer_than_the_pool_timeout_fails() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=1, pool_timeout_s=0.2) as (client, _):
        async with trio.open_nursery() as nursery:
            held = trio.Event()

            async def hold_the_connection() -> None:
                async with client.stream(
                    "POST", "/chat/completions", json=BODY | {"model": "held", "stream": True}
                ):
                    held.set()
                    await trio.sleep_forever()

            nursery.start_soon(hold_the_connection)
            await held.wait()
            with pytest.raises(httpx2.PoolTimeout, match="no free connection to fake"):
                await post(client)
            nursery.cancel_scope.cancel()


async def test_a_cancelled_call_closes_its_connection_and_frees_its_place() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=1) as (client, pool):
        with trio.move_on_after(SETTLE_S):
            await post(client, "stall")
        [stalled] = upstream.calls
        with trio.fail_after(1):
            await stalled.ended.wait()
        assert stalled.outcome == "disconnected"
        assert pool.open_connections == 0
        await post(client)
        assert upstream.calls[1].outcome == "completed"
        assert upstream.calls[1].client != stalled.client


async def test_an_idle_connection_past_its_keepalive_is_not_reused() -> None:
    upstream = fake()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, upstream)
        transport = PooledTransport(name="fake", max_connections=10, keepalive_s=0.05)
        pool = transport.pool
        async with httpx2.AsyncClient(base_url=base_url(binds), transport=transport) as client:
            await post(client)
            await trio.sleep(0.1)
            await post(client)
            first, second = upstream.calls
            assert first.client != second.client
            assert pool.open_connections == 1
        nursery.cancel_scope.cancel()


async def test_closing_the_pool_closes_its_connections_and_refuses_new_calls() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=10) as (client, pool):
        await post(client)
        await pool.aclose()
        assert pool.open_connections == 0
        with pytest.raises(httpx2.ConnectError, match="closed"):
            await post(client)


async def test_the_sdk_model_goes_through_the_pool() -> None:
    upstream = fake()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, upstream)
        model = OpenAIChatModel(base_url=base_url(binds), api_key="", timeout_s=5, name="fake")
        try:
            request = ChatRequest(
                model="fast", messages=(ChatMessage("user", "hello there"),), caller="test"
            )
            for _ in range(2):
                await model.complete(request)
                async with model.stream(request) as stream:
                    assert "".join([text async for text in stream])
        finally:
            await model.aclose()
        assert len(upstream.calls) == 4
        assert len({call.client for call in upstream.calls}) == 1
        nursery.cancel_scope.cancel()


async def test_closing_a_requests_calls_closes_their_sockets_before_their_tasks_run() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=10) as (client, pool):
        calls = RequestCalls()
        failures: list[BaseException] = []

        async def call_for_the_request() -> None:
            REQUEST_CALLS.set(calls)
            try:
                await post(client, "stall")
            except httpx2.TransportError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_for_the_request)
            stalled = await upstream.wait_for_call("stall")
            calls.close_all()
            # The upstream sees the close although the calling task has not run since.
            with trio.fail_after(1):
                await stalled.ended.wait()
            assert stalled.outcome == "disconnected"
        assert len(failures) == 1
        assert pool.open_connections == 0
        # The closed connection is never handed out again.
        await post(client)
        assert upstream.calls[-1].client != stalled.client


async def test_close_all_closes_only_the_calls_of_its_own_request() -> None:
    upstream = fake()
    async with pooled_client(upstream, max_connections=10) as (client, _):
        leaving, staying = RequestCalls(), RequestCalls()

        async def call_for(calls: RequestCalls, model: str) -> None:
            REQUEST_CALLS.set(calls)
            with contextlib.suppress(httpx2.TransportError):
                await post(client, model)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_for, leaving, "stall")
            nursery.start_soon(call_for, staying, "held")
            left = await upstream.wait_for_call("stall")
            stayed = await upstream.wait_for_call("held")
            leaving.close_all()
            with trio.fail_after(1):
                await left.ended.wait()
            await trio.sleep(SETTLE_S)
            assert stayed.outcome == "open"
            nursery.cancel_scope.cancel()


class RecordingStream(httpcore2.AsyncNetworkStream):
    """Stands in for a socket: records what is written, answers reads with `reply`."""

    def __init__(self, reply: bytes) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self._reply = reply

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        reply, self._reply = self._reply, b""
        return reply

    async def aclose(self) -> None:
        self.closed = True


async def test_a_request_written_in_parts_leaves_in_one_send_before_the_first_read() -> None:
    socket = RecordingStream(reply=b"HTTP/1.1 200 OK\r\n")
    stream = CoalescedWrites(socket)
    await stream.write(b"POST /v1/chat/completions HTTP/1.1\r\n\r\n")
    await stream.write(b"")
    await stream.write(b'{"model": "m"}')
    assert socket.writes == []
    assert await stream.read(4096) == b"HTTP/1.1 200 OK\r\n"
    assert socket.writes == [b'POST /v1/chat/completions HTTP/1.1\r\n\r\n{"model": "m"}']
    await stream.read(4096)
    assert len(socket.writes) == 1
    await stream.write(b"never sent")
    await stream.aclose()
    assert socket.closed
    assert len(socket.writes) == 1
