"""A client that leaves, however it leaves, leaves nothing behind: its connection, its tasks
and its stream slot are released, and its upstream calls closed.

HTTP/1.1 is tested whole (a full stream, a hang-up mid-stream, a reader that stops reading);
HTTP/2 is refused (see service/connections/http1.py), and an `Upgrade: h2c` is served as
HTTP/1.1, hang-ups included. A failure inside one connection is logged once, with its request
id, and ends that connection only.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from service.connections.http1 import Http1Protocol
from tests.fake_upstream import Behaviour, FakeUpstream
from tests.hostile.clients import exchange, status_of
from tests.hostile.watch import Held, back_to
from tests.integration.harness import RunningService, host_port, running_service

BODY = json.dumps({"message": "Tell me a long story", "message_id": "m-leave"}).encode()
H2C_UPGRADE = (
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)
GOAWAY = 0x7
HTTP_1_1_REQUIRED = 0xD


def process_request(extra_headers: bytes = b"", body: bytes = BODY) -> bytes:
    return (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra_headers
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def warmed_baseline(service: RunningService) -> Held:
    """What the idle service holds once one whole request has been served."""
    response = await service.client.post(
        "/api/process", json={"message": "warm up", "message_id": "warm"}
    )
    assert response.status_code == 200
    await service.client.aclose()  # its keep-alive connection would count as held
    held = Held.of(service)
    with trio.fail_after(5):
        while held.connections:
            await trio.sleep(0.02)
            held = Held.of(service)
    return held


async def read_until(stream: trio.SocketStream, marker: bytes) -> bytes:
    received = b""
    with trio.fail_after(10):
        while marker not in received:
            chunk = await stream.receive_some()
            assert chunk, f"closed before {marker!r}: {received!r}"
            received += chunk
    return received


async def test_whole_streams_over_http1_and_h2c_upgrade_leave_nothing(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env={"MOCK_FIRST_TOKEN_MS": "5"}) as service:
        baseline = await warmed_baseline(service)
        host, port = host_port(service.url)
        for extra in (b"", H2C_UPGRADE):
            reply = await exchange(host, port, process_request(b"Connection: close\r\n" + extra))
            assert status_of(reply) == 200  # never 101: the upgrade is ignored
            assert b"event: done" in reply
            await back_to(baseline, service)


@pytest.mark.parametrize("upgrade", [b"", H2C_UPGRADE], ids=["http1", "h2c-upgrade"])
async def test_a_hang_up_mid_stream_closes_the_upstream_calls_and_leaves_nothing(
    tmp_path: Path, upgrade: bytes
) -> None:
    fake = FakeUpstream()
    async with running_service(tmp_path, fake) as service:
        baseline = await warmed_baseline(service)
        # The warm-up was answered; from now on the agents never answer.
        fake.behaviours.update({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
        fake.calls.clear()
        stream = await trio.open_tcp_stream(*host_port(service.url))
        await stream.send_all(process_request(upgrade))
        await read_until(stream, b"event: agent.started")
        with trio.fail_after(5):
            calls = [await fake.wait_for_call("fake-a"), await fake.wait_for_call("fake-b")]
        await stream.aclose()

        with trio.fail_after(2):
            for call in calls:
                await call.ended.wait()
        assert [call.outcome for call in calls] == ["disconnected", "disconnected"]
        await back_to(baseline, service)


async def test_http2_prior_knowledge_is_refused_with_goaway_and_closed(tmp_path: Path) -> None:
    async with running_service(tmp_path, None) as service:
        baseline = await warmed_baseline(service)
        stream = await trio.open_tcp_stream(*host_port(service.url))
        settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings_frame)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                received += chunk
        await stream.aclose()

        frames = []
        while received:
            length = int.from_bytes(received[:3], "big")
            frames.append((received[3], received[9 : 9 + length]))
            received = received[9 + length :]
        goaways = [payload for kind, payload in frames if kind == GOAWAY]
        assert len(goaways) == 1
        assert int.from_bytes(goaways[0][4:8], "big") == HTTP_1_1_REQUIRED
        await back_to(baseline, service)


async def test_curl_http2_is_served_over_http1_or_refused(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env={"MOCK_FIRST_TOKEN_MS": "5"}) as service:
        baseline = await warmed_baseline(service)
        curl = ["curl", "-s", "-N", "-X", "POST", f"{service.url}/api/process"]
        curl += ["-H", "Content-Type: application/json", "-d", BODY.decode()]
        upgraded = await trio.run_process([*curl, "--http2"], capture_stdout=True)
        assert upgraded.stdout.rstrip().splitlines()[-2] == b"event: done"
        refused = await trio.run_process(
            [*curl, "--http2-prior-knowledge"], capture_stdout=True, check=False
        )
        assert refused.returncode != 0
        assert refused.stdout == b""
        await back_to(baseline, service)


def huge_summary() -> Behaviour:
    # Far more than the socket buffers of both ends hold (megabytes each).
    return Behaviour(tokens=("x" * 4096,) * 6000)


async def open_and_never_read(service: RunningService) -> tuple[trio.SocketStream, float]:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(host_port(service.url))
    stream = trio.SocketStream(sock)
    await stream.send_all(process_request())
    return stream, trio.current_time()


async def test_the_request_deadline_closes_a_client_that_stopped_reading(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream()
    env = {"REQUEST_TIMEOUT_S": "2", "SEND_TIMEOUT_S": "60"}
    async with running_service(tmp_path, fake, env=env) as service:
        baseline = await warmed_baseline(service)
        fake.behaviours["fake-summary"] = huge_summary()
        stream, opened_at = await open_and_never_read(service)
        with trio.fail_after(5):
            await fake.wait_for_call("fake-summary")
        took = await back_to(baseline, service, within_s=15)
        closed_after = trio.current_time() - opened_at
        # The deadline (2 s) and the last event's grace (2 s), not the write stall bound.
        assert closed_after < 10, (took, closed_after)
        with trio.fail_after(10):  # the client finds its connection ended
            while await stream.receive_some():
                pass
        await stream.aclose()


async def test_a_write_that_stalls_closes_the_connection(tmp_path: Path) -> None:
    fake = FakeUpstream()
    env = {"REQUEST_TIMEOUT_S": "120", "SEND_TIMEOUT_S": "1"}
    async with running_service(tmp_path, fake, env=env) as service:
        baseline = await warmed_baseline(service)
        fake.behaviours["fake-summary"] = huge_summary()
        stream, opened_at = await open_and_never_read(service)
        await back_to(baseline, service, within_s=20)
        assert trio.current_time() - opened_at < 20  # far inside the request's deadline
        await stream.aclose()


async def test_a_failure_inside_one_connection_is_logged_once_and_ends_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = Http1Protocol.handle

    async def fails_on_boom(self: Http1Protocol, event: object) -> None:
        if b"BOOM" in getattr(event, "data", b""):
            raise RuntimeError("injected")
        await handle(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(Http1Protocol, "handle", fails_on_boom)
    async with running_service(tmp_path, None, env={"MOCK_FIRST_TOKEN_MS": "5"}) as service:
        baseline = await warmed_baseline(service)
        bystander = await trio.open_tcp_stream(*host_port(service.url))
        await bystander.send_all(process_request(b"X-Request-Id: bystander\r\n"))

        victim = await trio.open_tcp_stream(*host_port(service.url))
        head = process_request(b"X-Request-Id: victim-1\r\n", body=b'{"message": BOOM}')
        await victim.send_all(head[: -len(b"BOOM}")])
        with trio.fail_after(5):  # the app has the request, and its id, before the rest
            while not any(name.endswith("._handle") for name in Held.of(service).task_names):  # noqa: ASYNC110
                await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked(0.01)
        with caplog.at_level(logging.INFO):
            await victim.send_all(b"BOOM}")
            with trio.fail_after(5):
                assert await victim.receive_some() == b""
        await victim.aclose()

        reply = await read_until(bystander, b"event: done")
        assert b"event: done" in reply
        await bystander.aclose()
        await back_to(baseline, service)

    failures = [r for r in caplog.records if "connection failed" in r.getMessage()]
    assert len(failures) == 1
    assert getattr(failures[0], "request_id", None) == "victim-1"
    assert failures[0].exc_info is not None
    assert "injected" in repr(failures[0].exc_info[1])
