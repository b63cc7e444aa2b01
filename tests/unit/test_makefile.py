"""`make run` installs what serving needs and nothing more; the targets that test or lint add
the dev tools on top; `make run ENSEMBLE=NAME` serves examples/NAME.toml. Read from what make
would run (`make -n`) in a virtualenv not made yet."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
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


def requirement_names(requirements: list[str]) -> set[str]:
    """`psycopg[binary]>=3.2` -> `psycopg`."""
    return {re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower() for line in requirements}


def test_no_dev_tool_is_a_dependency_of_the_service() -> None:
    """What `make run` installs (the package's own dependencies) holds none of the dev
    extra's tools; the one name in both is httpx, which the service itself imports."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    service = requirement_names(project["dependencies"])
    dev = requirement_names(project["optional-dependencies"]["dev"])
    assert {"pytest", "mypy", "ruff", "playwright", "schemathesis", "hypothesis"} <= dev
    assert service & dev == {"httpx"}


def test_the_license_is_an_spdx_string_so_setuptools_prints_no_banner() -> None:
    """A table (`license = {text = "MIT"}`) made setuptools print a deprecation banner at
    every install, twice."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


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
