"""The fault suite's table: every case's row, printed after the session, and written as
Markdown to the file FAULTS_REPORT names (`make test-faults` sets it)."""

from __future__ import annotations

import os
import platform
from collections.abc import Generator, Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.databases import postgres_schema
from tests.faults.report import REPORTS, CaseReport, as_markdown, as_text


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A DATABASE_URL on a fresh schema of the machine's PostgreSQL, dropped afterwards."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def report(request: pytest.FixtureRequest) -> CaseReport:
    case = CaseReport(test_id=request.node.name)
    REPORTS.append(case)
    return case


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    outcome = yield
    case = getattr(item, "funcargs", {}).get("report")
    if isinstance(case, CaseReport):
        if outcome.when == "call":
            case.result = "passed" if outcome.passed else "FAILED"
            case.seconds = outcome.duration
        elif outcome.failed:
            case.result = "ERROR"
        elif outcome.skipped:
            case.result = "skipped"
    return outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault suite")
    terminalreporter.line(as_text(REPORTS))
    destination = os.environ.get("FAULTS_REPORT")
    if destination:
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}"
        path.write_text(f"Run on {date.today().isoformat()}, {machine}.\n\n" + as_markdown(REPORTS))
        terminalreporter.line(f"table written to {path}")
