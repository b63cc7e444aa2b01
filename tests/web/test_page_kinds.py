"""The page shows every kind of event a stream can carry: its handler's cases are read here
and compared with the kinds events.py declares (no hand-kept list to update)."""

from __future__ import annotations

import re
from pathlib import Path

from service.events import KINDS

TURN = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "turn.js"


def handled_kinds(source: str) -> set[str]:
    """The `case "...":` labels of the turn's `event(type, data)` switch."""
    body = source.split("  event(type, data) {", 1)[1].split("\n  }\n", 1)[0]
    return set(re.findall(r'case "([a-z.]+)":', body))


def test_the_page_handles_exactly_the_declared_kinds() -> None:
    assert handled_kinds(TURN.read_text()) == set(KINDS)


def test_the_reading_of_the_page_finds_a_missing_case() -> None:
    source = TURN.read_text().replace('case "summary.restarted":', "// (removed)")
    assert "summary.restarted" not in handled_kinds(source)
