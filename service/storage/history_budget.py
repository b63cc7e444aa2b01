"""The history budget: a new message is given the newest whole exchanges of its
conversation (a question and the answers to it) whose text fits in HISTORY_MAX_CHARS
together. One rule for a stored conversation (queries.history) and for the turns an OpenAI
client sends itself (api/routes/openai.py).

    kept = newest_that_fit([len(q) + len(a) for q, a in newest_first], max_chars)
"""

from __future__ import annotations

from collections.abc import Iterable


def newest_that_fit(sizes_newest_first: Iterable[int], max_chars: int) -> int:
    """How many exchanges, newest first, fit in `max_chars` together (an exchange that does
    not fit ends the count: an older one that would is not skipped to)."""
    used = kept = 0
    for size in sizes_newest_first:
        if used + size > max_chars:
            break
        used += size
        kept += 1
    return kept
