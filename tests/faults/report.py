"""What each fault case did and what it counted, kept for the whole session and shown as
one table at its end (tests/faults/conftest.py prints it, and writes it as Markdown when
FAULTS_REPORT names a file).

    def test_a_fault(report: CaseReport) -> None:
        report.did("kill -9, 50 streams", "kill -9 during 50 open streams, restart")
        report.count(opened=50, completed=12, interrupted=38, missing=0)
        assert ...    # the row says FAILED if this does not hold

Counts are recorded before the assertions that judge them, so a failing case still shows
what it saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

COLUMNS = ("case", "result", "what it did", "what it counted")


@dataclass
class CaseReport:
    test_id: str
    case: str = ""
    action: str = ""
    counts: dict[str, object] = field(default_factory=dict)
    result: str = "not run"
    seconds: float = 0.0

    def did(self, case: str, action: str) -> None:
        self.case = case
        self.action = action

    def count(self, **counts: object) -> None:
        """Add counts, in the order given; `_` in a name is shown as a space."""
        self.counts.update(counts)

    def counted(self) -> str:
        return ", ".join(
            f"{name.replace('_', ' ')} {_shown(value)}" for name, value in self.counts.items()
        )

    def cells(self) -> tuple[str, str, str, str]:
        return (self.case or self.test_id, self.result, self.action, self.counted())


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# Every case of the session, in the order they ran.
REPORTS: list[CaseReport] = []


def as_text(reports: Sequence[CaseReport], width: int = 200) -> str:
    """The table for a terminal: one block per case, the counts wrapped under it."""
    lines = []
    case_width = max((len(r.cells()[0]) for r in reports), default=4)
    for report in reports:
        case, result, action, counted = report.cells()
        lines.append(f"{case:<{case_width}}  {result:<7} {report.seconds:6.1f} s  {action}")
        lines.extend(_wrapped(counted, width - case_width - 2, indent=" " * (case_width + 2)))
    return "\n".join(lines)


def _wrapped(text: str, width: int, *, indent: str) -> list[str]:
    lines: list[str] = []
    line = ""
    for part in text.split(", "):
        candidate = f"{line}, {part}" if line else part
        if line and len(candidate) > width:
            lines.append(indent + line + ",")
            line = part
        else:
            line = candidate
    if line:
        lines.append(indent + line)
    return lines


def as_markdown(reports: Sequence[CaseReport]) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " | time |", "|---|---|---|---|---|"]
    for report in reports:
        cells = [cell.replace("|", "\\|") for cell in report.cells()]
        rows.append("| " + " | ".join(cells) + f" | {report.seconds:.0f} s |")
    return "\n".join(rows) + "\n"
