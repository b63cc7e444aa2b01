"""How an ensemble deliberates: a strategy is the order of its steps, chosen by the ensemble
file (`strategy = "summarize"`, the default). The driver (run.py) gives it the run's
`Steps` and holds the guarantees every strategy shares: the request's deadline, one terminal
event, a client's hang-up cancelling everything; inside a step, each member's timeout,
retries, fallbacks and hedge, the quorum and the stragglers (gather.py).

    async def summarize(run: RunContext, steps: Steps) -> Done | Failed:
        answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
        return steps.shortfall(answers) or await steps.summarize(answers)

A new strategy is a function here (or in a module of its own beside this one) and its name
in STRATEGIES and in the ensemble's `strategy` field (ensemble/model.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ..events import Done, Failed
from .context import RunContext
from .gather import Ask
from .steps import Steps

Strategy = Callable[[RunContext, Steps], Awaitable[Done | Failed]]


async def summarize(run: RunContext, steps: Steps) -> Done | Failed:
    """Every agent answers the question; the summarizer combines the answers."""
    answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
    return steps.shortfall(answers) or await steps.summarize(answers)


STRATEGIES: Mapping[str, Strategy] = {"summarize": summarize}
