"""The load generator: clients that post fan-out requests and time each stream.

Python, on trio and httpx2 over the service's own connection pool, checked against its own
CPU use: a run reports how busy the generator itself was, so a saturated generator is seen,
not mistaken for the service.
"""

from __future__ import annotations

import itertools
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import trio

from service.llm.pool import PooledTransport

_ids = itertools.count(1)


@dataclass
class Timing:
    """One request, in seconds from the moment it was sent."""

    total: float
    first_token: float | None
    outcome: str


@dataclass
class LoadResult:
    timings: list[Timing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    generator_cpu_s: float = 0.0

    @property
    def generator_busy(self) -> float:
        """The share of one core the generator used: near 1.0, it is the bottleneck."""
        return self.generator_cpu_s / self.wall_s if self.wall_s else 0.0


def client(url: str, connections: int, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An HTTP client over the service's own connection pool: httpx's rescans every
    connection per request, which made the generator the bottleneck at 100 clients."""
    transport = PooledTransport(name="bench", max_connections=connections)
    return httpx2.AsyncClient(
        base_url=url,
        timeout=httpx2.Timeout(600, connect=60),
        transport=transport,
        headers=headers,
    )


OPENAI_ROUTE = "/v1/chat/completions"


async def one_request(
    http: httpx2.AsyncClient, message: str | None = None, route: str = "/api/process"
) -> Timing:
    number = next(_ids)
    question = message or f"Bench question {number}?"
    if route == OPENAI_ROUTE:
        return await _one_openai_request(http, question)
    body = {"message": question, "message_id": f"bench-{number}"}
    started = trio.current_time()
    first_token: float | None = None
    outcome = "incomplete"
    async with http.stream("POST", "/api/process", json=body) as response:
        if response.status_code != 200:
            return Timing(trio.current_time() - started, None, f"http {response.status_code}")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
                if kind == "summary.delta" and first_token is None:
                    first_token = trio.current_time() - started
                elif kind in ("done", "error"):
                    outcome = kind
    return Timing(trio.current_time() - started, first_token, outcome)


async def _one_openai_request(http: httpx2.AsyncClient, question: str) -> Timing:
    """The same question as an OpenAI client streams it: chunks, then `data: [DONE]`."""
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": question}],
        "stream": True,
    }
    started = trio.current_time()
    first_token: float | None = None
    outcome = "incomplete"
    async with http.stream("POST", OPENAI_ROUTE, json=body) as response:
        if response.status_code != 200:
            return Timing(trio.current_time() - started, None, f"http {response.status_code}")
        async for line in response.aiter_lines():
            if first_token is None and line.startswith("data: {") and '"content":"' in line:
                if '"content":""' not in line:
                    first_token = trio.current_time() - started
            elif line == "data: [DONE]":
                outcome = "done"
            elif line.startswith('data: {"error"'):
                outcome = "error"
    return Timing(trio.current_time() - started, first_token, outcome)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(
    url: str,
    clients: int,
    *,
    requests_each: int | None = None,
    duration_s: float | None = None,
    headers: dict[str, str] | None = None,
    route: str = "/api/process",
) -> LoadResult:
    """`clients` concurrent clients, each sending its next request when the last ended."""
    deadline = trio.current_time() + duration_s if duration_s else float("inf")
    async with client(url, clients, headers) as http:

        async def run_client(result: LoadResult) -> None:
            sent = 0
            while trio.current_time() < deadline and (
                requests_each is None or sent < requests_each
            ):
                sent += 1
                try:
                    timing = await one_request(http, route=route)
                except httpx2.HTTPError as exc:
                    result.errors.append(type(exc).__name__)
                    continue
                if timing.outcome != "done":
                    result.errors.append(timing.outcome)
                result.timings.append(timing)

        return await measured(clients, run_client)


async def measured(clients: int, run_client: Callable[[LoadResult], Awaitable[None]]) -> LoadResult:
    """Run `clients` copies of `run_client` at once, timing the run and the generator's CPU."""
    result = LoadResult()
    cpu_before, started = _cpu(), trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(run_client, result)
    result.wall_s = trio.current_time() - started
    result.generator_cpu_s = _cpu() - cpu_before
    return result


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def floor_pipeline(
    upstream: httpx2.AsyncClient, agents: int, agent_model: str, summary_model: str
) -> Timing:
    """The same calls the service makes for one request, made straight to the upstream: the
    agents at once, then the streamed summary. The floor to compare with.

    The client is plain httpx2, as the one that measures the service: the full SDK in this
    process cost more CPU per call than the whole service and made the floor the slower.
    """
    started = trio.current_time()
    messages = [{"role": "user", "content": f"Bench question {next(_ids)}?"}]

    async def ask() -> None:
        body = {"model": agent_model, "messages": messages}
        response = await _retried_once(lambda: upstream.post("/chat/completions", json=body))
        response.raise_for_status()

    async with trio.open_nursery() as nursery:
        for _ in range(agents):
            nursery.start_soon(ask)
    first_token: float | None = None
    body = {"model": summary_model, "messages": messages, "stream": True}
    request = upstream.build_request("POST", "/chat/completions", json=body)
    response = await _retried_once(lambda: upstream.send(request, stream=True))
    try:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first_token is None and line.startswith("data: {"):
                first_token = trio.current_time() - started
    finally:
        await response.aclose()
    return Timing(trio.current_time() - started, first_token, "done")


async def _retried_once(send: Callable[[], Awaitable[httpx2.Response]]) -> httpx2.Response:
    """A pooled connection the fake just closed as idle fails at once; the SDK (and the
    service) retry that, and so does the floor."""
    try:
        return await send()
    except httpx2.RemoteProtocolError:
        return await send()


def sdk_client(base_url: str) -> Any:
    """The openai SDK as a client of the fake (or a peer) calls it, without the service."""
    import openai

    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key="bench",
        # A pooled connection the fake closed as idle is retried, as the service retries it.
        max_retries=2,
        http_client=openai.DefaultAsyncHttpxClient(
            http2=False,
            limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=1000),
        ),
    )


async def floor_loop(
    base_url: str, clients: int, requests_each: int, agent_model: str, summary_model: str
) -> LoadResult:
    upstream = client(base_url, 2 * clients)  # both agents of every client at once
    try:

        async def run_client(result: LoadResult) -> None:
            for _ in range(requests_each):
                result.timings.append(await floor_pipeline(upstream, 2, agent_model, summary_model))

        return await measured(clients, run_client)
    finally:
        await upstream.aclose()


async def sdk_stream_loop(base_url: str, clients: int, duration_s: float, model: str) -> LoadResult:
    """Single streamed chat completions through the openai SDK, `clients` at a time: what a
    gateway that forwards one call per request is asked to do."""
    import openai

    deadline = trio.current_time() + duration_s
    upstream = sdk_client(base_url)
    messages = [{"role": "user", "content": "Bench question?"}]
    try:

        async def run_client(result: LoadResult) -> None:
            while trio.current_time() < deadline:
                begun = trio.current_time()
                try:
                    stream = await upstream.chat.completions.create(
                        model=model,
                        messages=messages,
                        stream=True,  # type: ignore[arg-type]
                    )
                    async with stream:
                        async for _ in stream:
                            pass
                except openai.OpenAIError as exc:
                    result.errors.append(type(exc).__name__)
                    continue
                result.timings.append(Timing(trio.current_time() - begun, None, "done"))

        return await measured(clients, run_client)
    finally:
        await upstream.close()
