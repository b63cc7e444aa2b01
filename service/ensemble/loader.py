"""Load and validate an ensemble file (TOML), with errors that name the file and field.

ensemble = load_ensemble(Path("ensemble.toml"))
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from .model import Ensemble


class EnsembleError(Exception):
    """The ensemble file is unreadable or invalid; the message names the file and the field."""


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """`agents[0].model: <message>`; checks across fields name their own place in `message`."""
    message = message.removeprefix("Value error, ")
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return f"{where}: {message}" if where else message


def parse_ensemble(text: str, *, source: str) -> Ensemble:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnsembleError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Ensemble.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(error["loc"], error["msg"]) for error in exc.errors())
        raise EnsembleError(f"{source}: {problems}") from exc


def load_ensemble(path: Path) -> Ensemble:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnsembleError(f"{path}: cannot read the ensemble file: {exc}") from exc
    return parse_ensemble(text, source=str(path))
