"""What a run's calls have used so far: the tokens of each member's answers, and the calls
paid for and not used (waste.py). The steps add to it as each ends, a step cancelled midway
too, so whoever started the run can count what it paid for when the run ended without a
terminal event of its own (its client left, the server shut down, the pipeline crashed).

    spend = Spend(ensemble)
    nursery.start_soon(run_pipeline, run, send, spend)
    ...                                  # the run was cancelled
    failed = spend.failed("server", PublicError.of(RunCancelled()))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ensemble import Ensemble
from ..events import Failed, PublicError
from ..llm import Usage
from .calls import Attempts
from .waste import WasteTally


@dataclass
class Spend:
    ensemble: Ensemble
    # The mock answers: every call costs $0 (ensemble/prices.py).
    free: bool = False
    # Tokens per member over every step so far (a member asked in three rounds: all three).
    usage: dict[str, Usage] = field(default_factory=dict)
    # The calls paid for and not used, over every step so far.
    wasted: WasteTally = field(default_factory=WasteTally)

    def add(self, member: str, usage: Usage | None, attempts: Attempts | None) -> None:
        """A member's step is over: the tokens of its answer, the calls it wasted."""
        if usage is not None:
            before = self.usage.get(member)
            self.usage[member] = usage if before is None else _sum(before, usage)
        if attempts is not None:
            self.wasted.add(member, attempts)

    def failed(self, source: str, error: PublicError) -> Failed:
        """The run's end as `error`, with what its calls used until then."""
        return Failed(
            source=source,
            error=error,
            usage=dict(self.usage),
            wasted=self.wasted.priced(self.ensemble, free=self.free),
        )


def _sum(first: Usage, second: Usage) -> Usage:
    return Usage(
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
    )
