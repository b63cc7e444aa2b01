"""The limiter's settlement: one more consumer of a run's events (like the metrics and the
recorder), giving back at the end what the run reserved and did not use.

    settlement = Settlement(admission)
    settlement.observe(event)           # every event of the run
    await settlement.close()            # once, when the run is over (shielded by its caller)
"""

from __future__ import annotations

from ..events import Done, Event, Failed, spent_tokens
from .admission import Admission


class Settlement:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._used: int | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, Done | Failed):
            # A failed run's finished calls count, and every call paid for and not used
            # (a cancelled run's calls in flight among them): what the usage ledger counts.
            self._used = spent_tokens(event)

    async def keep_lease(self) -> None:
        await self.admission.keep_lease()

    async def close(self) -> None:
        await self.admission.settle(self._used)
