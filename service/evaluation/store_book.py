"""The book of an evaluation the server runs: its results and verdicts kept in the database,
under its owner, as they come (storage/evaluations.py), and what their calls used added to
the usage ledger with them. A resume begins from what is there.

    book = StoreBook(store, owner, "ev_...")
    earlier = await book.begin(fingerprint)
    await book.add(result)      # StoppedElsewhere once the evaluation was cancelled meanwhile
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from ..storage import Store
from ..storage.evaluations import ResultKind, add_result, evaluation_results
from ..storage.records import Owner, UsageLine
from .book import EvaluationError
from .results import ModelSpend, Result, Verdict


class StoppedElsewhere(EvaluationError):
    """The evaluation is no longer running in the database (its owner cancelled it, maybe
    through another instance): its job stops, and writes nothing more."""


class StoreBook:
    def __init__(self, store: Store, owner: Owner, evaluation_id: str, *, key_id: str = "") -> None:
        self._store = store
        self._owner = owner
        self._id = evaluation_id
        # The ledger's key column: the caller's key ("" without one).
        self._key_id = key_id
        # Everything kept so far, earlier runs' included: a report of a stopped job.
        self.results: list[Result] = []
        self.spent_usd = 0.0

    async def begin(self, fingerprint: dict[str, Any]) -> list[Result]:
        # The fingerprint is the evaluation's row itself: its questions, contestants and
        # scorer were stored when it was made, and a resume reads them back.
        rows, _ = await self._store.read(
            lambda connection: evaluation_results(connection, self._owner, self._id)
        )
        self.results = [Result(**row) for row in rows]
        self.spent_usd = sum(r.cost_usd or 0.0 for r in self.results)
        return list(self.results)

    async def add(self, result: Result, spent: Sequence[ModelSpend] = ()) -> None:
        await self._keep("result", asdict(result), result.cost_usd, spent)
        self.results.append(result)

    async def verdicts(self) -> list[Verdict]:
        _, rows = await self._store.read(
            lambda connection: evaluation_results(connection, self._owner, self._id)
        )
        return [Verdict(**row) for row in rows]

    async def add_verdict(self, verdict: Verdict, spent: Sequence[ModelSpend] = ()) -> None:
        await self._keep("verdict", asdict(verdict), verdict.cost_usd, spent)

    async def _keep(
        self,
        kind: ResultKind,
        data: dict[str, Any],
        cost_usd: float | None,
        spent: Sequence[ModelSpend],
    ) -> None:
        """One result, counted, and its calls in the usage ledger, in one transaction."""
        day = datetime.now(UTC).date().isoformat()
        owner = self._owner
        usage = [
            UsageLine(
                tenant=owner.tenant,
                user=owner.user,
                key_id=self._key_id,
                model=s.model,
                day=day,
                calls=s.calls,
                prompt_tokens=s.prompt_tokens,
                completion_tokens=s.completion_tokens,
                cost_usd=s.cost_usd,
            )
            for s in spent
        ]
        kept = await self._store.write_once(
            lambda connection: add_result(
                connection, owner, self._id, kind, data, cost_usd=cost_usd, usage=usage
            )
        )
        if not kept:
            raise StoppedElsewhere(f"evaluation {self._id} is no longer running")
        self.spent_usd += cost_usd or 0.0
