"""`make run` installs what serving needs and nothing more; the targets that test or lint add
the dev tools on top; `make run ENSEMBLE=NAME` serves examples/NAME.toml. Read from what make
would run (`make -n`) in a virtualenv not made yet."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, venv: Path, *variables: str) -> list[str]:
    """The commands `make TARGET VARIABLE=value...` would run on a fresh clone (no
    virtualenv yet)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), target, f"VENV={venv}", *variables],
        capture_output=True,
        text=True,
        check=True,
        # What the caller's environment says of the ensemble is not the test's.
        env={k: v for k, v in os.environ.items() if k not in ("ENSEMBLE", "ENSEMBLE_FILE")},
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


def test_make_run_with_ensemble_serves_the_example_of_that_name(tmp_path: Path) -> None:
    commands = planned("run", tmp_path / "venv", "ENSEMBLE=council")
    assert (
        commands[-1] == f"ENSEMBLE_FILE=examples/council.toml {tmp_path}/venv/bin/python -m service"
    )


def test_an_ensemble_file_given_wins_over_ensemble(tmp_path: Path) -> None:
    commands = planned("run", tmp_path / "venv", "ENSEMBLE=council", "ENSEMBLE_FILE=mine.toml")
    assert commands[-1] == f"{tmp_path}/venv/bin/python -m service"


def test_an_ensemble_with_no_example_stops_make_run_naming_the_examples(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as stopped:
        planned("run", tmp_path / "venv", "ENSEMBLE=counsil")
    assert "ENSEMBLE=counsil: no examples/counsil.toml (there are: " in stopped.value.stderr
    assert " council " in stopped.value.stderr
