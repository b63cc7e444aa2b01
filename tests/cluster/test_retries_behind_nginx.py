"""Which requests nginx sends to the other replica when one answers 503, or drops the
connection after reading the request (as one that dies then), with deploy/nginx.conf as it
is: every GET, and a POST only when it starts a run (/api/process, /v1/chat/completions),
which a replica refusing with 503 never began and which is safe to run again. Any other
POST (a cancel, a new API key) is never sent twice. Two small servers stand in for the
replicas: one fails everything, the other answers 200, and each counts what it got."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from scripts.cluster.processes import Nginx, free_port
from tests.cluster.balancer import logged, replicas_tried

STARTS = (("POST", "/api/process"), ("POST", "/v1/chat/completions"))
OTHER_POSTS = (("POST", "/api/messages/m-1/cancel"), ("POST", "/admin/keys"))
GETS = (("GET", "/api/messages/m-1/events"), ("GET", "/api/conversations"))
# Sent one after another: nginx takes the replicas in turn, so each route meets the refusing
# one first at least once.
EACH = 4


@dataclass
class StandIn:
    """A replica that answers every request with `status`, and counts them by route."""

    status: int
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        while (await receive()).get("more_body"):
            pass
        self.seen[(scope["method"], scope["path"])] += 1
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def serve(self, task_status: trio.TaskStatus[list[str]]) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.errorlog = None  # type: ignore[assignment]
        await serve(self.app, config, task_status=task_status)  # type: ignore[arg-type]


@dataclass
class Dropping:
    """A replica that reads each request whole, then closes the connection unanswered."""

    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            received = b""
            while b"\r\n\r\n" not in received:
                if not (chunk := await stream.receive_some()):
                    return
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            while len(body) < (int(length[1]) if length else 0):
                if not (chunk := await stream.receive_some()):
                    return
                body += chunk
            method, path, _ = head.decode().split(" ", 2)
            self.seen[(method, path)] += 1

    async def serve(self, task_status: trio.TaskStatus[list[str]]) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1")
            )
            task_status.started([f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"])


# The failing replica, and what nginx answers a POST it does not send on: the replica's 503,
# or its own 502 (Bad Gateway) for a connection closed with no answer.
FAILING = [
    pytest.param(lambda: StandIn(503), 503, id="answers-503"),
    pytest.param(Dropping, 502, id="drops-the-connection-after-reading"),
]


@pytest.mark.parametrize(("make_failing", "answered_unsent"), FAILING)
async def test_only_gets_and_starts_are_sent_to_the_other_replica(
    tmp_path: Path, nginx: str, make_failing: Callable[[], StandIn | Dropping], answered_unsent: int
) -> None:
    failing, answering = make_failing(), StandIn(200)
    answers: dict[tuple[str, str], Counter[int]] = {}
    async with trio.open_nursery() as nursery:
        upstreams = [
            (await nursery.start(failing.serve))[0].removeprefix("http://"),
            (await nursery.start(answering.serve))[0].removeprefix("http://"),
        ]
        balancer = Nginx(port=free_port(), run_dir=tmp_path, upstreams=upstreams, binary=nginx)
        try:
            await balancer.start()
            async with httpx.AsyncClient(base_url=balancer.url, timeout=10) as client:
                for method, path in STARTS + OTHER_POSTS + GETS:
                    for _ in range(EACH):
                        response = await client.request(method, path, json={})
                        answers.setdefault((method, path), Counter())[response.status_code] += 1
            # Every request has ended, after nginx's own probe of /healthz at its start.
            sent = sum(answers[route].total() for route in answers)
            lines = (await logged(balancer, count=sent + 1))[1:]
        finally:
            await balancer.stop()
        nursery.cancel_scope.cancel()

    passed_on = Counter(
        (line["method"], line["uri"]) for line in lines if len(replicas_tried(line)) > 1
    )
    for route in STARTS + GETS:
        # Every request that met the failing replica was answered by the other.
        assert answers[route] == {200: EACH}, (route, answers[route])
        assert passed_on[route] == failing.seen[route] > 0, route
    for route in OTHER_POSTS:
        # Failed once, and that failure is the answer: the other replica never saw it.
        assert failing.seen[route] > 0, route
        assert answers[route] == {
            answered_unsent: failing.seen[route],
            200: answering.seen[route],
        }
        assert passed_on[route] == 0, route
