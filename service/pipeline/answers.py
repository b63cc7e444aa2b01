"""One agent's answer despite a misbehaving upstream: retries, then fallbacks, maybe a hedge.

    answer = await ask_agent(agent, ensemble.targets(agent), messages, model, policy,
                             Attempts(), {"message_id": "m-1", "agent": agent.name})

Raises the last `UpstreamError` when every target failed; the caller owns the deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from ..ensemble import Agent, Target
from ..errors import UpstreamBadResponse, UpstreamError
from ..llm import ChatMessage, ChatModel, Usage
from .calls import Attempts, MemberCalls, log
from .retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    usage: Usage | None
    model: str


class _Asking(MemberCalls):
    async def on_target(self, target: Target, *, last: bool) -> Answer:
        """Ask one target, retrying what is retryable while the deadline allows."""
        retries_done = 0
        while True:
            try:
                completion = await self.model.complete(self.call(target))
                if not completion.text.strip():
                    raise UpstreamBadResponse(f"{self.member.name} returned an empty answer")
            except UpstreamError as error:
                delay = self.after_failure(error, target, retries_done=retries_done, last=last)
                if delay is None:
                    raise
                retries_done += 1
                await trio.sleep(delay)
                continue
            return Answer(text=completion.text, usage=completion.usage, model=target.model)

    async def first_answer(self, targets: Sequence[Target]) -> Answer:
        async def on_target(index: int, last: bool) -> Answer:
            return await self.on_target(targets[index], last=last)

        return await self.in_order(targets, on_target)


async def ask_agent(
    agent: Agent,
    targets: Sequence[Target],
    messages: tuple[ChatMessage, ...],
    model: ChatModel,
    policy: RetryPolicy,
    attempts: Attempts,
    context: Mapping[str, object],
) -> Answer:
    """The agent's answer. With `hedge_after_ms`, a second request starts if none came by then
    (to the first fallback model, else the same one); the first answer wins and the other
    request is cancelled at once."""
    asking = _Asking(agent, tuple(messages), model, policy, attempts, context)
    if agent.hedge_after_ms is None:
        return await asking.first_answer(targets)
    hedge_after_s = agent.hedge_after_ms / 1000
    hedge_targets = targets[1:] if len(targets) > 1 else targets
    winner: Answer | None = None
    errors: list[UpstreamError] = []

    async with trio.open_nursery() as race:
        hedge_scope = trio.CancelScope()
        hedge_started = False

        async def contest(chain: Sequence[Target]) -> None:
            nonlocal winner
            try:
                answer = await asking.first_answer(chain)
            except UpstreamError as error:
                errors.append(error)
                if not hedge_started:
                    # Nothing left to race: the hedge would only repeat what just failed.
                    hedge_scope.cancel()
                return
            if winner is None:
                winner = answer
            race.cancel_scope.cancel()

        async def hedge() -> None:
            nonlocal hedge_started
            with hedge_scope:
                await trio.sleep(hedge_after_s)
                hedge_started = True
                log.info(
                    "%s: no answer after %g ms, hedging on %s",
                    agent.name,
                    agent.hedge_after_ms,
                    hedge_targets[0].model,
                    extra=dict(context),
                )
                await contest(hedge_targets)

        race.start_soon(contest, targets)
        race.start_soon(hedge)

    if winner is not None:
        return winner
    raise errors[0]
