"""A message's run, written down at its phase boundaries: the consumer of a stream's events
that keeps them (the way telemetry/stream.py counts them), never a step of the pipeline.

Writes happen when an agent's outcome arrives, when the summary starts, and at the end: never
per token. Those before the end go to a writer task, so a slow database never holds up the
stream; the last one runs when the run is over (shielded by its caller, with a time bound),
so a client that hangs up still leaves its record, `cancelled`.

    recorder = Recorder(store, message_pk)
    nursery.start_soon(recorder.write_in_background)
    recorder.observe(event, StoredEvent(event_id, type, data))   # every event, in order
    recorder.no_more_phases()                                     # the writer may stop
    await recorder.close()                                        # once the writer has
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import trio

from ..events import (
    AgentCompleted,
    AgentFailed,
    Done,
    Event,
    Failed,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
)
from .records import AgentAnswer, MessageEnd, Status, StoredEvent
from .store import Store

CUT_CODES = frozenset({"agent_cut", "deadline_exceeded"})
# How a stream that ended with `error` is recorded, when not simply `failed`.
STATUS_OF_CODE: dict[str, Status] = {"shutting_down": "interrupted", "cancelled": "cancelled"}


@dataclass
class _Batch:
    events: list[StoredEvent] = field(default_factory=list)
    agents: list[AgentAnswer] = field(default_factory=list)


class Recorder:
    def __init__(self, store: Store, message_pk: int) -> None:
        self._store = store
        self._pk = message_pk
        self._batch = _Batch()
        self._summary: list[str] = []
        self._end: MessageEnd | None = None
        self._send, self._receive = trio.open_memory_channel[_Batch](math.inf)

    def observe(self, event: Event, stored: StoredEvent) -> None:
        self._batch.events.append(stored)
        match event:
            case AgentCompleted(agent=agent, text=text, model=model, attempts=attempts):
                self._batch.agents.append(
                    AgentAnswer(
                        agent, model or None, "completed", text, None, attempts, event.elapsed_ms
                    )
                )
                self._flush()
            case AgentFailed(agent=agent, error=error, attempts=attempts):
                outcome: Literal["cut", "failed"] = "cut" if error.code in CUT_CODES else "failed"
                self._batch.agents.append(
                    AgentAnswer(agent, None, outcome, None, error.code, attempts, event.elapsed_ms)
                )
                self._flush()
            case SummaryStarted():
                self._flush()
            case SummaryDelta(text=text):
                self._summary.append(text)
            case SummaryRestarted():
                self._summary.clear()
            case Done(usage=usage, models=models, timings=timings):
                self._end = MessageEnd(
                    status="completed",
                    summary="".join(self._summary),
                    error_code=None,
                    models=dict(models),
                    usage={caller: u.as_dict() for caller, u in usage.items()},
                    timings={
                        "agents_ms": dict(timings.agents_ms),
                        "first_token_ms": timings.first_token_ms,
                        "total_ms": timings.total_ms,
                    },
                )
            case Failed(error=error, usage=usage):
                status = STATUS_OF_CODE.get(error.code, "failed")
                self._end = MessageEnd(
                    status=status,
                    summary="".join(self._summary) or None,
                    error_code=error.code,
                    models={},
                    usage={caller: u.as_dict() for caller, u in usage.items()},
                    timings=None,
                )
            case _:
                pass

    def _flush(self) -> None:
        self._send.send_nowait(self._batch)
        self._batch = _Batch()

    async def write_in_background(self) -> None:
        """Write each phase as it comes; returns after `no_more_phases`, once they are all
        written."""
        async for batch in self._receive:
            await self._store.record(self._pk, events=batch.events, agents=batch.agents)

    def no_more_phases(self) -> None:
        """The run is over: the writer finishes what it has and stops."""
        self._send.close()

    async def close(self) -> bool:
        """Write everything not written yet, and the message's end, in one transaction.

        Call it once the writer task has stopped (its nursery is done): phases it had not
        taken yet are written here. A run that saw no terminal event was stopped without
        one: it is `interrupted`."""
        self._send.close()
        events: list[StoredEvent] = []
        agents: list[AgentAnswer] = []
        while True:
            try:
                batch = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            events += batch.events
            agents += batch.agents
        events += self._batch.events
        agents += self._batch.agents
        end = self._end or MessageEnd(
            status="interrupted",
            summary="".join(self._summary) or None,
            error_code="interrupted",
            models={},
            usage={},
            timings=None,
        )
        return await self._store.record(self._pk, events=events, agents=agents, end=end)
