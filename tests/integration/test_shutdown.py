"""Graceful shutdown in-process: open streams get the grace period, then end with an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import host_port, iter_events, running_service

BODY = {"message": "q", "message_id": "m-shutdown"}


async def can_connect(url: str) -> bool:
    try:
        stream = await trio.open_tcp_stream(*host_port(url))
    except OSError:
        return False
    await stream.aclose()
    return True


async def test_a_stream_that_finishes_within_the_grace_period_completes(tmp_path: Path) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="A", first_token_delay_s=0.3),
            "fake-b": Behaviour(reply="B", first_token_delay_s=0.3),
            "fake-summary": Behaviour(tokens=("x",) * 10, token_delay_s=0.02),
        }
    )
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": "5"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            first = await anext(events)
            service.shutdown.set()
            rest = [event async for event in events]
        with trio.fail_after(3):
            await service.stopped.wait()

    assert first.event == "agent.started"
    assert rest[-1].event == "done"
    assert not fake.open_calls()


async def test_streams_open_when_the_grace_period_ends_get_shutting_down(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
    grace_s = 0.3
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": str(grace_s)}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            await anext(events)
            with trio.fail_after(5):
                await fake.wait_for_call("fake-b")
            shutdown_at = trio.current_time()
            service.shutdown.set()
            rest = [event async for event in events]
        with trio.fail_after(3):
            await service.stopped.wait()
        stopped_at = trio.current_time()
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream(*host_port(service.url))

    final = rest[-1]
    assert final.event == "error"
    assert final.data["error"]["code"] == "shutting_down"
    assert final.data["final"] is True
    # Not before the grace period is over; promptly after it (a loaded machine may lag).
    assert final.arrived_at - shutdown_at >= grace_s - 0.01
    assert final.arrived_at - shutdown_at < grace_s + 1
    assert stopped_at - shutdown_at < grace_s + 1
    assert not fake.open_calls()
    assert {call.outcome for call in fake.calls} == {"disconnected"}


async def test_new_streams_are_refused_once_shutdown_starts(tmp_path: Path) -> None:
    fake = FakeUpstream(default=Behaviour(stall=True))
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": "1"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            await anext(events)
            service.shutdown.set()
            with trio.fail_after(2):
                while await can_connect(service.url):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream(*host_port(service.url))
            rest = [event async for event in events]
    assert rest[-1].data["error"]["code"] == "shutting_down"


async def test_a_request_waiting_behind_a_stream_as_the_server_drains_does_not_hold_the_exit(
    tmp_path: Path,
) -> None:
    """nginx reuses a keep-alive connection the moment a response ends, so its next request
    can arrive just as a draining server closes that connection. That request (pipelined
    here, to make the moment certain) left the connection's reader waiting for a turn that
    never came: the process exited only when Hypercorn's graceful timeout (the grace plus
    2 s) cut it, long after its last stream had ended."""
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="A", first_token_delay_s=0.2),
            "fake-b": Behaviour(reply="B", first_token_delay_s=0.2),
            "fake-summary": Behaviour(tokens=("x",) * 5, token_delay_s=0.02),
        }
    )
    grace_s = 5
    body = b'{"message": "q", "message_id": "m-pipelined"}'
    post = (
        b"POST /api/process HTTP/1.1\r\nHost: fanout\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    requests = post + b"GET /healthz HTTP/1.1\r\nHost: fanout\r\n\r\n"
    env = {"SHUTDOWN_GRACE_S": str(grace_s)}
    async with running_service(tmp_path, fake, env=env) as service:
        received = b""
        async with await trio.open_tcp_stream(*host_port(service.url)) as connection:
            await connection.send_all(requests)
            with trio.fail_after(5):
                while b"event: " not in received:
                    received += await connection.receive_some()
                service.shutdown.set()
                shutdown_at = trio.current_time()
                while chunk := await connection.receive_some():
                    received += chunk
        with trio.fail_after(grace_s):
            await service.stopped.wait()
        stopped_after = trio.current_time() - shutdown_at

    assert b"event: done" in received
    # The stream was answered, the request behind it was not (the client sends it again).
    assert received.count(b"HTTP/1.1 ") == 1
    # Exited once its stream had ended, not at the end of the grace period.
    assert stopped_after < grace_s - 1, stopped_after
