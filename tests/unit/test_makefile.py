"""`make run` installs what serving needs and nothing more; the targets that test or lint add
the dev tools on top. Read from what make would run (`make -n`) in a virtualenv not made yet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run on a fresh clone (no virtualenv yet)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [
        command.split("pip install", 1)[1].split()[-1]
        for command in commands
        if "pip install" in command
    ]


def test_make_run_installs_the_service_without_its_dev_tools(tmp_path: Path) -> None:
    commands = planned("run", tmp_path / "venv")
    assert installs(commands) == ["."]
    assert commands[-1].endswith("python -m service")


@pytest.mark.parametrize("target", ["test", "lint", "test-faults", "test-coverage"])
def test_the_targets_that_test_add_the_dev_tools(tmp_path: Path, target: str) -> None:
    assert installs(planned(target, tmp_path / "venv")) == [".", "'.[dev]'"]
