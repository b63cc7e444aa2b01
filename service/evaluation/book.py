"""Where an evaluation keeps its results as they come, so an interrupted one picks up where
it stopped: an output folder for the command (`FolderBook`), the database for an
evaluation the server runs (evaluation/jobs.py).

    book = FolderBook(Path("eval-out"))
    earlier = await book.begin(fingerprint)     # what an interrupted run left
    await book.add(result)                      # each result, as it comes
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from .results import ModelSpend, Result, Verdict

RESULTS = "results.jsonl"
JUDGEMENTS = "judgements.jsonl"
RUN = "run.json"
R = TypeVar("R", Result, Verdict)


class EvaluationError(Exception):
    """One line for the operator (the command exits with 2; the server's job fails)."""


class Book(Protocol):
    async def begin(self, fingerprint: dict[str, Any]) -> list[Result]:
        """The results kept by an interrupted run of the same evaluation (its questions,
        contestants and scorer: `fingerprint`); EvaluationError if it holds another."""
        ...

    async def add(self, result: Result, spent: Sequence[ModelSpend] = ()) -> None:
        """Keep `result`; `spent` is what its calls used, per model (a ledger's concern)."""
        ...

    async def verdicts(self) -> list[Verdict]:
        """The judgements kept so far."""
        ...

    async def add_verdict(self, verdict: Verdict, spent: Sequence[ModelSpend] = ()) -> None: ...


class FolderBook:
    """An output folder: run.json (what it evaluates), results.jsonl and judgements.jsonl,
    a line per result, appended as each comes. A line an interruption cut is dropped (and
    asked again)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._results: IO[str] | None = None
        self._verdicts: IO[str] | None = None

    async def begin(self, fingerprint: dict[str, Any]) -> list[Result]:
        self.out.mkdir(parents=True, exist_ok=True)
        run_file = self.out / RUN
        if run_file.exists() and json.loads(run_file.read_text()) != fingerprint:
            raise EvaluationError(
                f"{self.out} holds another evaluation (other questions, contestants or "
                "scorer): choose another --out"
            )
        results = _records(Result, self.out / RESULTS) if run_file.exists() else []
        run_file.write_text(json.dumps(fingerprint))
        self._results = _rewritten(self.out / RESULTS, results)
        return results

    async def add(self, result: Result, spent: Sequence[ModelSpend] = ()) -> None:
        assert self._results is not None, "begin() first"
        _append(self._results, result)

    async def verdicts(self) -> list[Verdict]:
        verdicts = _records(Verdict, self.out / JUDGEMENTS)
        self._verdicts = _rewritten(self.out / JUDGEMENTS, verdicts)
        return verdicts

    async def add_verdict(self, verdict: Verdict, spent: Sequence[ModelSpend] = ()) -> None:
        assert self._verdicts is not None, "verdicts() first"
        _append(self._verdicts, verdict)

    def close(self) -> None:
        for log in (self._results, self._verdicts):
            if log is not None:
                log.close()


def _records(kind: type[R], path: Path) -> list[R]:
    """The whole lines of a results file that are a record; a cut one is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(kind(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue  # a line cut by the interruption: asked again
    return records


def _rewritten(path: Path, records: list[Result] | list[Verdict]) -> IO[str]:
    """The file written again whole (a line an interruption cut must not swallow the next
    one), then open for appending."""
    path.write_text("".join(json.dumps(asdict(record)) + "\n" for record in records))
    return path.open("a", encoding="utf-8")


def _append(log: IO[str], record: Result | Verdict) -> None:
    log.write(json.dumps(asdict(record)) + "\n")
    log.flush()
