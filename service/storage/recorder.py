"""A message's run, written down at its phase boundaries: the consumer of a stream's events
that keeps them (the way telemetry/stream.py counts them), never a step of the pipeline.

Writes happen when an agent's outcome arrives, when the summary starts, and at the end: never
per token. Those before the end go to a writer task, so a slow database never holds up the
stream; the last one runs when the run is over (shielded by its caller, with a time bound),
so a client that hangs up still leaves its record, `cancelled`.

    recorder = Recorder(store, message_pk)
    nursery.start_soon(recorder.write_in_background)
    recorder.observe(event, StoredEvent(event_id, type, data))   # every event, in order
    await recorder.close()                                        # once the writer has
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    Wasted,
)
from ..llm import Usage
from ..principal import Principal
from .records import AgentAnswer, MessageEnd, Status, StoredEvent, UsageLine
from .store import Store

CUT_CODES = frozenset({"agent_cut", "deadline_exceeded"})
# How a stream that ended with `error` is recorded, when not simply `failed`.
STATUS_OF_CODE: dict[str, Status] = {"shutting_down": "interrupted", "cancelled": "cancelled"}


@dataclass
class _Batch:
    events: list[StoredEvent] = field(default_factory=list)
    agents: list[AgentAnswer] = field(default_factory=list)


class Recorder:
    def __init__(
        self,
        store: Store,
        message_pk: int,
        *,
        principal: Principal,
        primary_models: Mapping[str, str],
    ) -> None:
        self._store = store
        self._pk = message_pk
        self._principal = principal
        # The model each member answered with, as the answers arrive (a fallback, maybe).
        self._models = dict(primary_models)
        self._batch = _Batch()
        # Each member's dollars as its answers arrive (None: a call of its with no known
        # price); `done` gives the whole, the summarizer's included.
        self._costs: dict[str, float | None] = {}
        # The calls the run paid for and did not use, as its end (`done` or `error`) says:
        # the ledger counts them too.
        self._wasted: tuple[Wasted, ...] = ()
        self._summary: list[str] = []
        self._end: MessageEnd | None = None
        self._closed = False
        # Phases waiting for the writer; the lock is held while a write is in flight, so
        # `close` neither overtakes nor repeats one.
        self._pending: list[_Batch] = []
        self._pending_changed = trio.Event()
        self._writing = trio.Lock()

    def observe(self, event: Event, stored: StoredEvent) -> None:
        if event.STORED:
            self._batch.events.append(stored)
        match event:
            case AgentCompleted(agent=agent, text=text, model=model, attempts=attempts):
                if model:
                    self._models[agent] = model
                usage = event.usage
                self._batch.agents.append(
                    AgentAnswer(
                        agent,
                        model or None,
                        "completed",
                        text,
                        None,
                        attempts,
                        event.elapsed_ms,
                        prompt_tokens=usage.prompt_tokens if usage else None,
                        completion_tokens=usage.completion_tokens if usage else None,
                        phase=event.step.phase,
                        round=event.step.round,
                        cost_usd=event.cost_usd,
                    )
                )
                if usage is not None:
                    before = self._costs.get(agent, 0.0)
                    cost = event.cost_usd
                    self._costs[agent] = None if before is None or cost is None else before + cost
                self._flush()
            case AgentFailed(agent=agent, error=error, attempts=attempts):
                outcome: Literal["cut", "failed"] = "cut" if error.code in CUT_CODES else "failed"
                self._batch.agents.append(
                    AgentAnswer(
                        agent,
                        None,
                        outcome,
                        None,
                        error.code,
                        attempts,
                        event.elapsed_ms,
                        phase=event.step.phase,
                        round=event.step.round,
                    )
                )
                self._flush()
            case SummaryStarted():
                self._flush()
            case SummaryDelta(text=text):
                self._summary.append(text)
            case SummaryRestarted():
                self._summary.clear()
            case Done(usage=usage, models=models, timings=timings):
                self._models.update(models)
                if event.cost is not None:
                    self._costs = dict(event.cost)
                self._wasted = event.wasted
                self._end = MessageEnd(
                    status="completed",
                    summary="".join(self._summary),
                    error_code=None,
                    models=dict(models),
                    usage={caller: u.as_dict() for caller, u in usage.items()},
                    timings=timings.as_dict(),
                    cost=event.cost_fields(),
                )
            case Failed(error=error, usage=usage):
                status = STATUS_OF_CODE.get(error.code, "failed")
                self._wasted = event.wasted
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
        self._pending.append(self._batch)
        self._batch = _Batch()
        self._pending_changed.set()

    async def write_in_background(self) -> None:
        """Write each phase as it comes, until `close` takes over what is left."""
        while not self._closed:
            await self._pending_changed.wait()
            self._pending_changed = trio.Event()
            async with self._writing:
                if not self._pending or self._closed:
                    continue
                # Phases that piled up while the last write ran go in one transaction. They
                # stay pending until it is done, so a write cancelled before it ran is left
                # for `close`.
                taken = len(self._pending)
                events = [e for batch in self._pending[:taken] for e in batch.events]
                agents = [a for batch in self._pending[:taken] for a in batch.agents]
                await self._store.record(self._pk, events=events, agents=agents)
                del self._pending[:taken]

    async def close(self) -> bool:
        """Write everything not written yet, and the message's end, in one transaction.

        It waits for a write in flight, then writes the phases still pending. A run that saw
        no terminal event was stopped without one: it is `interrupted`. Only the first call
        writes."""
        if self._closed:
            return True
        self._closed = True
        self._pending_changed.set()  # the writer, if waiting, stops
        async with self._writing:
            return await self._write_the_rest()

    async def _write_the_rest(self) -> bool:
        events: list[StoredEvent] = []
        agents: list[AgentAnswer] = []
        for batch in (*self._pending, self._batch):
            events += batch.events
            agents += batch.agents
        self._pending = []
        end = self._end or MessageEnd(
            status="interrupted",
            summary="".join(self._summary) or None,
            error_code="interrupted",
            models={},
            usage={},
            timings=None,
        )
        return await self._store.record(
            self._pk, events=events, agents=agents, end=end, usage=self._usage_lines(end)
        )

    def _usage_lines(self, end: MessageEnd) -> list[UsageLine]:
        """The ledger's lines for this run: a call per member that reported tokens, with
        its dollars (None when its price is not known)."""
        day = datetime.now(UTC).date().isoformat()
        lines: dict[str, UsageLine] = {}

        def add(model: str, calls: int, used: Usage, cost: float | None) -> None:
            before = lines.get(model)
            if before is not None:
                cost = None if cost is None or before.cost_usd is None else before.cost_usd + cost
            lines[model] = UsageLine(
                tenant=self._principal.tenant,
                user=self._principal.user,
                key_id=self._principal.key_id or "",
                model=model,
                day=day,
                calls=(before.calls if before else 0) + calls,
                prompt_tokens=(before.prompt_tokens if before else 0) + used.prompt_tokens,
                completion_tokens=(before.completion_tokens if before else 0)
                + used.completion_tokens,
                cost_usd=cost,
            )

        for caller, used in end.usage.items():
            tokens = Usage(used.get("prompt_tokens", 0), used.get("completion_tokens", 0))
            add(self._models.get(caller) or "unknown", 1, tokens, self._costs.get(caller))
        for wasted in self._wasted:
            add(wasted.model, wasted.calls, wasted.usage, wasted.cost_usd)
        return list(lines.values())
