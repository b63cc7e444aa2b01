"""Agents' pieces of text, gathered into fewer events: 16 agents at 100 tokens a second
would otherwise be 1,600 frames a second to encode, send, store and relay.

Between the run and its reader: an `agent.delta` waits until `interval_s` after the first
piece of its agent's call that is waiting, or until `max_chars` wait, and leaves as one
event with the pieces joined; the other agents' deltas waiting then leave with it (one
write to the client, not one per agent). Any other event first sends every piece waiting,
so the order of each agent's events (and the answer before its `agent.completed`) is kept.

    coalescer = DeltaCoalescer(events, AgentStreaming())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.run, receive)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ..events import AgentDelta, Event, Step
from .context import AgentStreaming


@dataclass(slots=True)
class _Waiting:
    first_at: float
    pieces: list[str] = field(default_factory=list)
    chars: int = 0


class DeltaCoalescer:
    """One run's coalescer. `run` passes the events; `held` lets a piece join a delta that
    is already waiting without going through the channel, so a piece costs a list append
    rather than two task switches (the first piece of each delta still goes through it).

    A piece refused by `held` is in the channel until `run` takes it: till then every later
    piece of its call is refused too, so none joins the waiting delta ahead of it."""

    __slots__ = ("_in_channel", "_pacing", "_send", "_waiting")

    def __init__(self, send: trio.MemorySendChannel[Event], pacing: AgentStreaming) -> None:
        self._send = send
        self._pacing = pacing
        self._waiting: dict[tuple[str, Step, int], _Waiting] = {}
        self._in_channel: dict[tuple[str, Step, int], int] = {}

    def held(self, delta: AgentDelta) -> bool:
        """Add `delta` to its agent's call's waiting delta; False when none is waiting (or
        it is full, or a piece of the call is still in the channel): then `delta` must be
        sent through the channel, and opens the next one."""
        key = (delta.agent, delta.step, delta.attempt)
        held = self._waiting.get(key)
        if (
            held is None
            or key in self._in_channel
            or held.chars + len(delta.text) >= self._pacing.max_chars
        ):
            self._in_channel[key] = self._in_channel.get(key, 0) + 1
            return False
        held.pieces.append(delta.text)
        held.chars += len(delta.text)
        return True

    def _taken(self, key: tuple[str, Step, int]) -> None:
        """A delta `held` refused came out of the channel."""
        left = self._in_channel.get(key, 0) - 1
        if left > 0:
            self._in_channel[key] = left
        else:
            self._in_channel.pop(key, None)

    async def run(self, receive: trio.MemoryReceiveChannel[Event]) -> None:
        """Pass every event from `receive` on, deltas coalesced; until `receive` ends.
        Closes neither channel's other end: the caller sends the terminal event after."""
        waiting, pacing = self._waiting, self._pacing
        async with receive:
            while True:
                event: Event | None = None
                try:
                    if not waiting:
                        # No deadline to watch: no cancel scope held while the run is quiet
                        # (a scope per open stream is memory at thousands of streams).
                        event = await receive.receive()
                    else:
                        due = min(w.first_at for w in waiting.values()) + pacing.interval_s
                        with trio.move_on_at(due):
                            event = await receive.receive()
                except trio.EndOfChannel:
                    break
                now = trio.current_time()
                if event is None:
                    # Every agent's delta leaves with the one that is due: the client gets
                    # them in one write, not one write per agent.
                    await self._send_waiting(list(waiting))
                    continue
                if isinstance(event, AgentDelta):
                    key = (event.agent, event.step, event.attempt)
                    self._taken(key)
                    held = waiting.setdefault(key, _Waiting(first_at=now))
                    held.pieces.append(event.text)
                    held.chars += len(event.text)
                    if held.chars >= pacing.max_chars:
                        await self._send_waiting([key])
                    continue
                await self._send_waiting(list(waiting))
                await self._send.send(event)
        await self._send_waiting(list(waiting))

    async def _send_waiting(self, keys: list[tuple[str, Step, int]]) -> None:
        for key in keys:
            # Taken out before the send waits: a piece coming meanwhile opens the next delta.
            held = self._waiting.pop(key)
            agent, step, attempt = key
            await self._send.send(
                AgentDelta(agent=agent, text="".join(held.pieces), attempt=attempt, step=step)
            )
