"""What of an agent's answer the client sees while it streams: the text of one call at a
time. A call that fails after its text was shown, or a hedge that wins over the call being
shown, makes the text so far void (`agent.restarted`), and the text of the call taking over
follows, so `agent.completed`'s text is always the pieces since the last restart.

    text = AgentText(events, coalescer, agent="llm-1", step=FIRST_STEP)
    await text.piece(attempt, "Rayleigh ", model)    # while a call streams
    text.failed(attempt, error)                      # a call that gave up
    await text.won(attempt, model)                   # before the answer is reported
"""

from __future__ import annotations

import trio

from ..errors import UpstreamError
from ..events import AgentDelta, AgentRestarted, Event, PublicError, Step
from .coalesce import DeltaCoalescer


class AgentText:
    __slots__ = (
        "_agent",
        "_client_has_text",
        "_coalescer",
        "_events",
        "_shown",
        "_step",
        "_texts",
        "_void",
    )

    def __init__(
        self,
        events: trio.MemorySendChannel[Event],
        coalescer: DeltaCoalescer,
        *,
        agent: str,
        step: Step,
    ) -> None:
        self._events = events
        self._coalescer = coalescer
        self._agent = agent
        self._step = step
        # The call whose text the client has, and every streaming call's text so far.
        self._shown: int | None = None
        self._texts: dict[int, list[str]] = {}
        # The client holds text that is void (its call failed): a restart must come first.
        self._void: PublicError | None = None
        self._client_has_text = False

    async def piece(self, attempt: int, text: str, model: str) -> None:
        self._texts.setdefault(attempt, []).append(text)
        if self._shown is None:
            await self._take_over(attempt, model)
        elif self._shown == attempt:
            await self._send(attempt, text)

    def failed(self, attempt: int, error: UpstreamError) -> None:
        self._texts.pop(attempt, None)
        if self._shown == attempt:
            self._shown = None
            self._void = PublicError.of(error)

    async def won(self, attempt: int, model: str) -> None:
        """Make the client hold exactly `attempt`'s text before its answer is reported."""
        if self._shown != attempt:
            await self._take_over(attempt, model)

    async def _take_over(self, attempt: int, model: str) -> None:
        if self._client_has_text:
            await self._events.send(
                AgentRestarted(
                    agent=self._agent,
                    attempt=attempt,
                    model=model,
                    error=self._void,
                    step=self._step,
                )
            )
            self._client_has_text = False
        self._void = None
        self._shown = attempt
        text = "".join(self._texts.get(attempt, ()))
        if text:
            await self._send(attempt, text)

    async def _send(self, attempt: int, text: str) -> None:
        self._client_has_text = True
        delta = AgentDelta(agent=self._agent, text=text, attempt=attempt, step=self._step)
        if not self._coalescer.held(delta):
            await self._events.send(delta)
