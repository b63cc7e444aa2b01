"""One agent's answer despite a misbehaving upstream: retries, then fallbacks, maybe a hedge.

    answer = await ask_agent(run, agent, Attempts(), messages)

Raises the last `UpstreamError` when every target failed; the caller owns the deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from ..ensemble import Agent, Target
from ..errors import UpstreamBadResponse, UpstreamError
from ..llm import ChatMessage, ChatRequest, Usage
from .agent_text import AgentText
from .calls import Attempts, MemberCalls, counted_if_cancelled, log
from .context import RunContext
from .waste import Call, reckoned, spending


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    usage: Usage | None
    model: str
    # Which call gave it (1 for the first), as its streamed text names it.
    attempt: int = 1


@dataclass(frozen=True)
class _Asking(MemberCalls):
    # The client's view of the answer while it streams; None: it arrives whole.
    text: AgentText | None = None

    async def on_target(self, target: Target, *, last: bool) -> Answer:
        """Ask one target, retrying what is retryable while the deadline allows."""
        retries_done = 0
        while True:
            request = self.call(target)
            attempt = self.attempts.count
            try:
                with counted_if_cancelled(), spending(self.attempts, request) as call:
                    answer = await self._answer(request, attempt, target, call)
                    if not answer.text.strip():
                        # Paid for all the same: its tokens, or at least its prompt's.
                        call.reported = answer.usage or reckoned(request, 0)
                        raise UpstreamBadResponse(f"{self.member.name} returned an empty answer")
            except UpstreamError as error:
                if self.text is not None:
                    self.text.failed(attempt, error)
                delay = self.after_failure(error, target, retries_done=retries_done, last=last)
                if delay is None:
                    raise
                retries_done += 1
                await trio.sleep(delay)
                continue
            return answer

    async def _answer(
        self, request: ChatRequest, attempt: int, target: Target, call: Call
    ) -> Answer:
        if self.text is None:
            completion = await self.model.complete(request)
            return Answer(completion.text, completion.usage, target.model, attempt)
        pieces: list[str] = []
        async with self.model.stream(request) as stream:
            async for piece in stream:
                pieces.append(piece)
                call.pieces += 1
                await self.text.piece(attempt, piece, target.model)
        return Answer("".join(pieces), stream.usage, target.model, attempt)


class _Untried:
    """The targets no request has gone to yet, shared by the primary and the hedge, so that
    neither sends to a model the other is already asking."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self._targets = list(targets)

    def take(self) -> Target | None:
        return self._targets.pop(0) if self._targets else None

    def empty(self) -> bool:
        return not self._targets


async def ask_agent(
    run: RunContext,
    agent: Agent,
    attempts: Attempts,
    messages: Sequence[ChatMessage],
    text: AgentText | None = None,
) -> Answer:
    """The agent's answer from the first of its targets that gives one, trying them in order.

    With `hedge_after_ms`, a second request starts if no answer came by then: to the next
    target not tried yet (the first fallback model), else to the model being asked. Both go
    on to untried targets when theirs gives up; the first answer wins and the other request
    is cancelled at once. Raises the last error when every request failed. `attempts` counts
    every request sent, and can be read after the agent was cut. `messages` are the prompt
    the strategy's step gives it; with `text`, the answer streams to the client through it.
    """
    context = run.log_context(agent.name)
    asking = _Asking(run, agent, tuple(messages), attempts, context, text=text)
    untried = _Untried(run.ensemble.targets(agent))
    if agent.hedge_after_ms is None:
        # Nothing to race: ask in this task. A race nursery and a task per stalled agent
        # were a tenth of an open stream's memory.
        answer = await _in_order(asking, untried)
        await _show_the_winner(text, answer)
        return answer
    winner: Answer | None = None
    errors: list[UpstreamError] = []
    asking_now: list[Target] = []

    async with trio.open_nursery() as race:
        hedge_scope = trio.CancelScope()
        hedge_started = False

        async def contest(first: Target) -> None:
            nonlocal winner
            target: Target | None = first
            while target is not None:
                asking_now.append(target)
                try:
                    answer = await asking.on_target(target, last=untried.empty())
                except UpstreamError as error:
                    errors.append(error)
                    asking_now.remove(target)
                    target = untried.take()
                    continue
                asking_now.remove(target)
                if winner is None:
                    winner = answer
                race.cancel_scope.cancel()
                return
            if not hedge_started:
                # Nothing is left to race: a hedge would only repeat what just failed.
                hedge_scope.cancel()

        async def hedge(after_s: float) -> None:
            nonlocal hedge_started
            with hedge_scope:
                await trio.sleep(after_s)
                target = untried.take() or (asking_now[0] if asking_now else None)
                if target is None:
                    return
                hedge_started = True
                log.info(
                    "%s: no answer after %g ms, hedging on %s",
                    agent.name,
                    after_s * 1000,
                    target.model,
                    extra=dict(context),
                )
                await contest(target)

        first = untried.take()
        if first is None:
            raise AssertionError("an agent always has at least one target")
        race.start_soon(contest, first)
        race.start_soon(hedge, agent.hedge_after_ms / 1000)

    if winner is not None:
        await _show_the_winner(text, winner)
        return winner
    raise errors[-1]


# How long showing the winning call's text may hold an answer already in hand.
SHOW_WINNER_S = 1.0


async def _show_the_winner(text: AgentText | None, answer: Answer) -> None:
    """Make the client hold the winning call's text before the answer is reported. The
    answer is in hand: shielded (and bounded), so a straggler deadline that fires now
    cannot turn it into a cut; a run already over has nobody to show it to."""
    if text is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(SHOW_WINNER_S):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await text.won(answer.attempt, answer.model)


async def _in_order(asking: _Asking, untried: _Untried) -> Answer:
    """The answer of the first target that gives one; the last error if none does."""
    target = untried.take()
    if target is None:
        raise AssertionError("an agent always has at least one target")
    while True:
        try:
            return await asking.on_target(target, last=untried.empty())
        except UpstreamError:
            target = untried.take()
            if target is None:
                raise
