"""Whether an answer is right, and how sure a score is.

    score("The answer is 42.", ("42",), "numeric")    # True
    interval([1, 0, 1, 1], seed=7)                      # (0.25, 1.0): a 95% bootstrap interval

Scorers: `exact` (the whole answer, case, spaces and end punctuation ignored), `includes`
(the right answer appears in it), `regex` (the right answer is a pattern the answer
matches), `numeric` (the last number in the answer equals it, within `tolerance`).
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Sequence

from ..pipeline.ballots import normalized
from .arguments import SCORERS

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def score(answer: str, right: Sequence[str], scorer: str, tolerance: float = 1e-6) -> bool:
    if scorer == "exact":
        return any(normalized(answer) == normalized(r) for r in right)
    if scorer == "includes":
        return any(normalized(r) in normalized(answer) for r in right)
    if scorer == "regex":
        return any(re.search(r, answer, re.IGNORECASE) for r in right)
    if scorer == "numeric":
        found = _NUMBER.findall(answer)
        if not found:
            return False
        value = float(found[-1].replace(",", ""))
        return any(_close(value, r, tolerance) for r in right)
    raise ValueError(f"no scorer named {scorer!r} ({', '.join(SCORERS)})")


def _close(value: float, right: str, tolerance: float) -> bool:
    try:
        expected = float(right.replace(",", ""))
    except ValueError:
        return False
    return abs(value - expected) <= tolerance * max(1.0, abs(expected))


def interval(
    outcomes: Sequence[float], *, seed: int, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `outcomes` (the same for one seed)."""
    if not outcomes:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(outcomes)
    means = sorted(statistics.fmean(rng.choices(outcomes, k=n)) for _ in range(resamples))
    low = means[int((1 - level) / 2 * resamples)]
    high = means[min(int((1 + level) / 2 * resamples), resamples - 1)]
    return (low, high)
