"""No sequence of bytes from a client ends the process, kills a worker or stops the listener.

`python -m service` as operators run it, one worker and two, gets the whole family many
times: early answers (413, 415, 405, 404) to clients that close, half-close or reset mid-body
on every route, then protocol garbage and random bytes. Afterwards it must be alive,
listening and serving a full stream, must have logged no error, and must stop promptly on
SIGTERM. Before the fix, the first family ended the process within one to thirty tries.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
import trio

from tests.hostile.clients import LEAVES, exchange, send_raw, status_of
from tests.integration.harness import host_port
from tests.integration.test_main_process import parse_sse
from tests.service_process import served

ROUTES = ("/api/process", "/admin/ensemble", "/metrics", "/healthz", "/readyz", "/nope")
# Each is answered before its body has arrived, then the client leaves mid-body.
EARLY_ANSWERS = (
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 9999999\r\n\r\n{",  # 413
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5000\r\n\r\n{",  # 415
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nffffff\r\n{",  # 413 on a chunked body
    *(
        method + b" " + route.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{"
        for route in ROUTES
        for method in (b"GET", b"POST", b"DELETE")
    ),  # 405 and 404 on every route, or an answer that ignores the body
)
GARBAGE = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 with prior knowledge
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/process HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /healthz\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)),  # a TLS hello
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 50,  # pipelined, never read
    b"GET /healthz HTTP/1.1\r\nHo",  # headers cut off
    b"GET /admin%2fensemble HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
)
REPEATS = 6
RANDOM_CASES = 60
PARALLEL = 16


def random_garbage(seed: int) -> list[bytes]:
    """Random bytes, and valid requests with random bytes flipped."""
    rng = random.Random(seed)
    valid = b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    valid += b'Content-Length: 34\r\n\r\n{"message":"hi","message_id":"m1"}'
    cases = [rng.randbytes(rng.randint(1, 2000)) for _ in range(RANDOM_CASES // 2)]
    for _ in range(RANDOM_CASES // 2):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cases.append(bytes(mutated))
    return cases


async def send_all_cases(host: str, port: int, cases: Sequence[tuple[bytes, str]]) -> None:
    limit = trio.CapacityLimiter(PARALLEL)

    async def one(data: bytes, leave: str) -> None:
        async with limit:
            try:
                await send_raw(host, port, data, leave=leave)  # type: ignore[arg-type]
            except OSError as exc:
                pytest.fail(f"the server stopped accepting ({exc}) after {data[:60]!r}")

    async with trio.open_nursery() as nursery:
        for data, leave in cases:
            nursery.start_soon(one, data, leave)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_no_hostile_client_ends_the_process_or_stops_it_serving(
    tmp_path: Path, workers: str
) -> None:
    async with served(tmp_path, WORKERS=workers, SHUTDOWN_GRACE_S="1") as service:
        host, port = host_port(service.url)
        family = [(data, leave) for data in EARLY_ANSWERS for leave in LEAVES] * REPEATS
        family += [(data, leave) for data in (*GARBAGE, *random_garbage(11)) for leave in LEAVES]
        await send_all_cases(host, port, family)

        assert service.process.returncode is None, service.log.decode()
        # Still listening and serving: a health check, and a whole stream to its `done`.
        health = await exchange(
            host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(health) == 200
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            response = await client.post(
                "/api/process", json={"message": "still there?", "message_id": "after"}
            )
        assert parse_sse(response.text)[-1].event == "done"

        log = service.log.decode()
        for sign_of_trouble in ("Traceback", " ERROR ", "exited unexpectedly"):
            assert sign_of_trouble not in log, log[-4000:]

        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            exit_code = await service.process.wait()
    assert exit_code == 0
    assert "still open after the grace period" not in service.log.decode()
