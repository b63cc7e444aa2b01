"""What the deliberation strategies decide from answers, without calling anyone: a vote's
tally, a council's labels and rankings, a selector's choice. Pure functions of text, so
every rule here is tested on its own.

    tally = count_votes({"a": "42", "b": "42.", "c": "41"}, "exact")
    tally.groups        # (("a", "b"), ("c",))
    parse_ranking("... FINAL RANKING:\n1. Response B\n2. Response A", ["Response A", "Response B"])
    # ["Response B", "Response A"]
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..events import Rank

_PUNCTUATION_AT_END = ".!?;:," + string.whitespace
_WORD = re.compile(r"\w+")


def normalized(text: str) -> str:
    """An answer as a vote compares it: case, runs of spaces and end punctuation ignored."""
    return " ".join(text.split()).lower().strip(_PUNCTUATION_AT_END)


def similarity(first: str, second: str) -> float:
    """How alike two answers are, 0 to 1: the share of words they have in common (Jaccard)."""
    a, b = set(_WORD.findall(first.lower())), set(_WORD.findall(second.lower()))
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class Tally:
    """Agents grouped by the answer they gave, most votes first; the winner and why."""

    groups: tuple[tuple[str, ...], ...]
    chosen: str
    reason: str


def count_votes(answers: Mapping[str, str], method: str) -> Tally:
    """`answers` maps each agent (in the order listed) to its answer. `exact`: the answer
    given most often wins; `similar`: the answer most like all the others wins. A tie goes
    to the agent listed first."""
    order = list(answers)
    by_text: dict[str, list[str]] = {}
    for agent in order:
        by_text.setdefault(normalized(answers[agent]), []).append(agent)
    groups = sorted(by_text.values(), key=lambda g: (-len(g), order.index(g[0])))
    total = len(order)
    if method == "exact":
        top = groups[0]
        tied = [g for g in groups if len(g) == len(top)]
        reason = f"{len(top)} of {total} agents gave this answer"
        if len(tied) > 1:
            reason += f" (a tie with {len(tied) - 1} other answer(s): the first agent listed)"
        return Tally(tuple(map(tuple, groups)), top[0], reason)
    scores = {
        agent: sum(similarity(answers[agent], answers[other]) for other in order if other != agent)
        / max(total - 1, 1)
        for agent in order
    }
    chosen = max(order, key=lambda agent: (scores[agent], -order.index(agent)))
    reason = f"the answer most like the others' (mean word overlap {scores[chosen]:.2f})"
    return Tally(tuple(map(tuple, groups)), chosen, reason)


def response_labels(count: int) -> list[str]:
    """Response A, Response B, ... (then AA, AB... past 26)."""
    letters = string.ascii_uppercase

    def label(index: int) -> str:
        return letters[index] if index < 26 else letters[index // 26 - 1] + letters[index % 26]

    return [f"Response {label(i)}" for i in range(count)]


def shown_to(
    reviewer: str, agents: Sequence[str], *, anonymize: bool, seed: str
) -> list[tuple[str, str]]:
    """(label, agent) of the answers `reviewer` reviews: every agent's but its own. Shuffled
    for this reviewer (the same every time for one message) and labelled Response A, B...
    when anonymised; in the order listed, under the agents' names, when not."""
    others = [agent for agent in agents if agent != reviewer]
    if not anonymize:
        return [(agent, agent) for agent in others]
    random.Random(f"{seed}/{reviewer}").shuffle(others)
    return list(zip(response_labels(len(others)), others, strict=True))


_FINAL_RANKING = re.compile(r"FINAL\s+RANKING\s*:?", re.IGNORECASE)
_RANKED_LINE = re.compile(r"^\s*(?:\d+\s*[.):-]|[-*])?\s*\**\s*(.+?)\s*\**\s*$")


def parse_ranking(text: str, labels: Sequence[str]) -> list[str] | None:
    """The labels in the order a review ranks them, best first, read from what follows its
    last `FINAL RANKING:`; None when that section does not name every label exactly once."""
    found = list(_FINAL_RANKING.finditer(text))
    if not found:
        return None
    known = {label.lower(): label for label in labels}
    ranking: list[str] = []
    for line in text[found[-1].end() :].splitlines():
        match = _RANKED_LINE.match(line)
        if not match or not line.strip():
            continue
        label = known.get(match.group(1).strip(" .").lower())
        if label is None:
            continue
        if label in ranking:
            return None
        ranking.append(label)
    return ranking if len(ranking) == len(labels) else None


def aggregate_ranking(agents: Sequence[str], rankings: Sequence[Sequence[str]]) -> list[Rank]:
    """Each agent's mean place (1 is best) over the rankings that place it, best first; an
    agent no ranking placed comes last. Ties keep the order the agents are listed."""
    places: dict[str, list[int]] = {agent: [] for agent in agents}
    for ranking in rankings:
        for place, agent in enumerate(ranking, start=1):
            if agent in places:
                places[agent].append(place)
    ranks = [
        Rank(agent, round(sum(p) / len(p), 2) if p else float(len(agents)), len(p))
        for agent, p in places.items()
    ]
    return sorted(ranks, key=lambda r: (r.reviews == 0, r.average_rank, agents.index(r.agent)))


_CHOICE = re.compile(r"most consistent response is\W*response\W*(\d+)", re.IGNORECASE)
_ANY_RESPONSE = re.compile(r"response\W*(\d+)", re.IGNORECASE)


def parse_selection(text: str, count: int) -> int | None:
    """The 0-based index of the response a selector chose (`Response 3` is 2); None when its
    reply names none of the `count` responses."""
    match = _CHOICE.search(text) or _ANY_RESPONSE.search(text)
    if match is None:
        return None
    index = int(match.group(1)) - 1
    return index if 0 <= index < count else None
