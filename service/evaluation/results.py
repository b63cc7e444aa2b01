"""What an evaluation keeps as it goes: a `Result` per question asked of a contestant, a
`Verdict` per question a judge read in one order. Each is a line of a results file, or a
row in the store, exactly as these fields say.

    Result(contestant="default/alpha", item="q01", answer="49", correct=True, ...)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """One question asked of one contestant: a line of results.jsonl."""

    contestant: str
    item: str
    answer: str
    correct: bool
    latency_s: float
    first_token_s: float | None
    prompt_tokens: int
    completion_tokens: int
    # None when some call's price is not known.
    cost_usd: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's reading of one pair on one question, in one order (`first` shown as A)."""

    ensemble: str
    member: str
    item: str
    first: str  # "ensemble" or "member": which of the two the judge saw as answer A
    said: str  # A, B, TIE, or "" when its reply named none
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class ModelSpend:
    """What one question's calls to one model used (the wasted ones included), for a
    usage ledger; not kept with the result."""

    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    # None: the model's price is not known.
    cost_usd: float | None
