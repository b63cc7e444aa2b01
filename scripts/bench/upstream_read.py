"""What reading an upstream's answer costs a client alone, with no service around it: the
CPU of the service's own OpenAI client (`OpenAIChatModel`) asking an answer whole and
asking it streamed, `concurrency` calls at a time. Scenario 11 subtracts it to tell the
service's own cost of agent streaming from the cost of reading each token off the socket.

    python -m scripts.bench.upstream_read http://127.0.0.1:8000 bench-think 16 3
    {"whole_cpu_ms_per_call": 0.6, "streamed_cpu_ms_per_call": 11.9}
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Awaitable, Callable

import trio

from service.llm import ChatMessage, ChatRequest
from service.llm.openai_model import OpenAIChatModel


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(url: str, model_name: str, concurrency: int, rounds: int) -> dict[str, float]:
    model = OpenAIChatModel(base_url=f"{url}/v1", api_key="bench", timeout_s=120)
    request = ChatRequest(
        model=model_name, messages=(ChatMessage("user", "Think aloud"),), caller="bench"
    )

    async def whole() -> None:
        await model.complete(request)

    async def streamed() -> None:
        async with model.stream(request) as stream:
            async for _ in stream:
                pass

    async def cpu_ms_per_call(call: Callable[[], Awaitable[None]]) -> float:
        await call()  # connections open, code warm
        before = _cpu_s()
        for _ in range(rounds):
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(call)
        return round((_cpu_s() - before) * 1000 / (concurrency * rounds), 2)

    try:
        return {
            "whole_cpu_ms_per_call": await cpu_ms_per_call(whole),
            "streamed_cpu_ms_per_call": await cpu_ms_per_call(streamed),
        }
    finally:
        await model.aclose()


if __name__ == "__main__":
    url, model_name, concurrency, rounds = sys.argv[1:5]
    print(json.dumps(trio.run(measure, url, model_name, int(concurrency), int(rounds))))
