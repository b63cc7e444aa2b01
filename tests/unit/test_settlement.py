"""The limiter's settlement gives back what a run reserved and did not use: the tokens it
keeps are those its end says the calls used, the wasted calls' included, whichever way
the run ended."""

from __future__ import annotations

from typing import cast

from service.errors import RunCancelled
from service.events import Done, Failed, PublicError, Timings, Wasted
from service.limits import Settlement
from service.limits.admission import Admission
from service.llm import Usage


class Settled:
    """An admission that only remembers what it was settled with."""

    def __init__(self) -> None:
        self.used: list[int | None] = []

    async def settle(self, used_tokens: int | None) -> None:
        self.used.append(used_tokens)


STRAGGLER = Wasted(member="b", model="m", calls=1, usage=Usage(40, 3), cost_usd=None)


async def settled_with(end: Done | Failed | None) -> list[int | None]:
    admission = Settled()
    settlement = Settlement(cast(Admission, admission))
    if end is not None:
        settlement.observe(end)
    await settlement.close()
    return admission.used


async def test_a_completed_run_keeps_its_answers_and_its_wasted_calls_tokens() -> None:
    done = Done(
        summarizer="sum",
        usage={"a": Usage(10, 5), "sum": Usage(20, 7)},
        timings=Timings(agents_ms={}, first_token_ms=None, total_ms=1.0),
        wasted=(STRAGGLER,),
    )
    assert await settled_with(done) == [10 + 5 + 20 + 7 + 40 + 3]


async def test_a_cancelled_run_keeps_the_calls_it_paid_for() -> None:
    cancelled = Failed(
        source="server",
        error=PublicError.of(RunCancelled()),
        usage={"a": Usage(10, 5)},
        wasted=(STRAGGLER,),
    )
    assert await settled_with(cancelled) == [10 + 5 + 40 + 3]


async def test_a_run_that_never_ended_gives_back_everything() -> None:
    assert await settled_with(None) == [None]
