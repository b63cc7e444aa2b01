"""An evaluation's budget (`--max-cost`): the dollars spent so far, and what each question
(or judgement) in flight is reckoned to cost at most, so that none starts that could pass
the budget, the first ones included.

    budget = Budget(limit_usd=0.50, spent_usd=kept)
    reckoned = reckon_question(ensemble, agent, question, default_base_url=url, free=False)
    if await budget.reserve(reckoned):      # False: it could pass the budget; stop
        ...                                 # ask it
        budget.settle(reckoned, cost_usd)   # what it did cost

A reckoning prices each call the question makes at its dearest model (its own or a
fallback): the prompt at a token per byte (a byte-level tokenizer makes no more), the reply
at the member's `max_tokens` (`UNSET_REPLY_TOKENS` when it sets none: a guess, not a
bound). A call that reads other answers (a summary, a later round) is reckoned to read
every answer of the question at its `max_tokens`, with `STRATEGY_WORDING_TOKENS` for the
strategy's own prompt around them. A hedge or a retry pays again, and is not foreseen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import trio

from ..ensemble import Agent, Ensemble, Member
from ..ensemble.prices import call_cost
from ..llm import ChatMessage, Usage
from ..pipeline.prompt import agent_messages
from .book import EvaluationError

# A reply of a member that sets no `max_tokens` (the rate limiter reserves as many).
UNSET_REPLY_TOKENS = 1_000
# A chat call's roles and separators, around its messages' text.
CHAT_FORMAT_TOKENS = 16
# A strategy's own words around the answers it quotes (its default prompts are shorter).
STRATEGY_WORDING_TOKENS = 1_000


class Budget:
    """What may still be spent. Without a limit every reservation is granted."""

    def __init__(self, limit_usd: float | None, spent_usd: float = 0.0) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.stopped = False
        self._reserved_usd = 0.0
        self._in_flight = 0
        self._settled = trio.Event()

    async def reserve(self, reckoned_usd: float) -> bool:
        """Hold `reckoned_usd` for what is about to start. While it could pass the budget
        and something is in flight, wait for that to settle (it may cost less than held);
        with nothing in flight, refuse: the budget is spent (`stopped`)."""
        if self.limit_usd is not None:
            while self.spent_usd + self._reserved_usd + reckoned_usd > self.limit_usd:
                if not self._in_flight:
                    self.stopped = True
                    return False
                await self._settled.wait()
        self._reserved_usd += reckoned_usd
        self._in_flight += 1
        return True

    def settle(self, reckoned_usd: float, cost_usd: float | None) -> None:
        """What was held for one question is spent: what it cost (None: not known)."""
        self._reserved_usd -= reckoned_usd
        self._in_flight -= 1
        self.spent_usd += cost_usd or 0.0
        self._settled.set()
        self._settled = trio.Event()


def reckon_question(
    ensemble: Ensemble,
    agent: Agent | None,
    question: str,
    *,
    default_base_url: str,
    free: bool,
) -> float:
    """The most one question is reckoned to cost: asked of `agent` alone, or (None) of the
    ensemble as its strategy runs it. EvaluationError when a model's price is not known."""
    if agent is not None:
        return _dearest(ensemble, agent, _first_call(agent, question), default_base_url, free)
    rounds = ensemble.rounds_per_agent
    read = rounds * sum(_reply_tokens(a) for a in ensemble.agents)
    reading: list[Member] = [a for a in ensemble.agents for _ in range(rounds - 1)]
    if ensemble.summarizer_role is not None and ensemble.summarizer is not None:
        reading.append(ensemble.summarizer)
    total = sum(
        _dearest(ensemble, a, _first_call(a, question), default_base_url, free)
        for a in ensemble.agents
    )
    for member in reading:
        own = (member.system_prompt, member.prompt or "", question)
        prompt = _bytes(own) + STRATEGY_WORDING_TOKENS + read + CHAT_FORMAT_TOKENS
        total += _dearest(ensemble, member, prompt, default_base_url, free)
    return total


def reckon_call(
    ensemble: Ensemble,
    member: Member,
    messages: Sequence[ChatMessage],
    *,
    default_base_url: str,
    free: bool,
) -> float:
    """The most one call of `member` with these `messages` (a judge's) is reckoned to cost."""
    prompt = _bytes(m.content for m in messages) + CHAT_FORMAT_TOKENS
    return _dearest(ensemble, member, prompt, default_base_url, free)


def _first_call(agent: Agent, question: str) -> int:
    """The prompt tokens of an agent's answer to the question: its messages as sent."""
    return _bytes(m.content for m in agent_messages(agent, question)) + CHAT_FORMAT_TOKENS


def _bytes(texts: Iterable[str]) -> int:
    return sum(len(text.encode()) for text in texts)


def _reply_tokens(member: Member) -> int:
    return member.max_tokens or UNSET_REPLY_TOKENS


def _dearest(
    ensemble: Ensemble, member: Member, prompt_tokens: int, default_base_url: str, free: bool
) -> float:
    """One call of `member` at its dearest target (its model, or a fallback)."""
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=_reply_tokens(member))
    dearest = Decimal(0)
    for target in ensemble.targets(member):
        cost = call_cost(ensemble, target, usage, default_base_url=default_base_url, free=free)
        if cost is None:
            raise EvaluationError(
                f"a budget needs every model's price, and {target.model!r} has none: price "
                f'it in the ensemble file ([prices."{target.model}"])'
            )
        dearest = max(dearest, cost)
    return float(dearest)
