"""Run a pipeline in a test and keep every event with the virtual time it arrived at."""

from __future__ import annotations

import random
from typing import TypeVar

import trio

from service.ensemble import Ensemble
from service.pipeline import (
    Done,
    Event,
    Failed,
    PipelineRequest,
    RetryPolicy,
    RunContext,
    run_pipeline,
)
from service.pipeline.context import AgentStreaming
from tests.fake_models import ScriptedModel

T = TypeVar("T")

REQUEST = PipelineRequest(message="Why is the sky blue?", message_id="m-1")


class TopOfRange(random.Random):
    """Jitter that always picks the top of its range, so backoff waits are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Recorder:
    """Collects events with the virtual time each arrived at."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    async def drain(self, receive: trio.MemoryReceiveChannel[Event]) -> None:
        async with receive:
            async for event in receive:
                self.events.append((trio.current_time(), event))

    def of_type(self, kind: type[T]) -> list[T]:
        return [event for _, event in self.events if isinstance(event, kind)]

    def time_of(self, kind: type[object]) -> float:
        (found,) = [at for at, event in self.events if isinstance(event, kind)]
        return found

    @property
    def terminal(self) -> Event:
        terminals = [e for _, e in self.events if isinstance(e, Done | Failed)]
        assert len(terminals) == 1, f"expected exactly one terminal event, got {terminals}"
        assert self.events[-1][1] is terminals[0], "the terminal event must be the last one"
        return terminals[0]


async def run(
    the_ensemble: Ensemble,
    model: ScriptedModel,
    *,
    request_timeout_s: float = 100.0,
    retry_policy: RetryPolicy | None = None,
    events_buffer: int = 1000,
    request: PipelineRequest = REQUEST,
    agent_streaming: AgentStreaming | None = None,
) -> Recorder:
    """`events_buffer` 0 makes every event wait for the reader, as a slow client would."""
    recorder = Recorder()
    send, receive = trio.open_memory_channel[Event](events_buffer)
    policy = retry_policy or RetryPolicy(rng=TopOfRange())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.drain, receive)
        run = RunContext(
            request=request,
            ensemble=the_ensemble,
            model=model,
            request_timeout_s=request_timeout_s,
            retry_policy=policy,
            agent_streaming=agent_streaming,
        )
        await run_pipeline(run, send)
    return recorder
