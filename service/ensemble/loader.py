"""Load and validate ensembles (TOML), with errors that name the file, line and field.

ENSEMBLE_FILE may be one ensemble (top-level `[[agents]]` and `[summarizer]`: its name is
`default`), a file of named ensembles (`[ensembles.NAME]` tables, an optional `default =
"NAME"` and `[providers.*]` shared by all), or a directory of `*.toml` files, one ensemble
each, named by the file. Every load is a version, identified by a hash of every file read
(prompt files included):

    loaded = load_ensembles(Path("ensemble.toml"))
    name, ensemble = loaded.pick(None)             # the default
    loaded.version                                 # e.g. "3f2a9c41d0be"
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .locate import line_of
from .model import Ensemble, read_text_file

DEFAULT_ENSEMBLE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class EnsembleError(Exception):
    """The ensemble file is unreadable or invalid; the message names the file and the field."""


class UnknownEnsemble(LookupError):
    """A request named an ensemble that is not loaded; `known` lists the ones that are."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known


@dataclass(frozen=True)
class LoadedEnsembles:
    """One version of the ensembles: what a request is pinned to when it starts."""

    version: str
    loaded_at: datetime
    source: Path
    ensembles: Mapping[str, Ensemble]
    default: str
    # Every file read for this version, with its text: what a reload watches.
    files: Mapping[Path, str] = field(default_factory=dict, repr=False)

    def pick(self, name: str | None) -> tuple[str, Ensemble]:
        """(name, ensemble) for `name`, or the default; raises UnknownEnsemble."""
        chosen = self.default if name is None else name
        ensemble = self.ensembles.get(chosen)
        if ensemble is None:
            raise UnknownEnsemble(chosen, sorted(self.ensembles))
        return chosen, ensemble

    def map(self, change: Callable[[str, Ensemble], Ensemble]) -> LoadedEnsembles:
        """The same version with every ensemble passed through `change(name, ensemble)`."""
        changed = {name: change(name, ensemble) for name, ensemble in self.ensembles.items()}
        return replace(self, ensembles=changed)


def _where(loc: tuple[int | str, ...]) -> str:
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where


def _problem(text: str, source: str, loc: tuple[int | str, ...], message: str) -> str:
    """`file:LINE: agents[0].model: <message>`; checks across fields name their own place."""
    message = message.removeprefix("Value error, ")
    line = line_of(text, loc)
    at = f"{source}:{line}" if line is not None else source
    where = _where(loc)
    return f"{at}: {where}: {message}" if where else f"{at}: {message}"


def _validate(
    data: Any, *, text: str, source: str, prefix: tuple[str, ...], context: dict[str, Any]
) -> Ensemble:
    try:
        return Ensemble.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [
            _problem(text, source, (*prefix, *error["loc"]), error["msg"])
            for error in errors
            if not _explained_by_another(error["type"], error["loc"], errors)
        ]
        raise EnsembleError("; ".join(problems)) from exc


def _explained_by_another(kind: str, loc: tuple[int | str, ...], errors: list[Any]) -> bool:
    """An invalid agent also leaves its list "too short": report only what is wrong with it."""
    return kind == "too_short" and any(
        len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
    )


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnsembleError(f"{source}: not valid TOML: {exc}") from exc


def _read(path: Path, what: str) -> str:
    try:
        return read_text_file(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EnsembleError(f"{path}: cannot read the {what}: {exc}") from exc


def parse_ensemble(text: str, *, source: str, context: dict[str, Any] | None = None) -> Ensemble:
    """One ensemble from the text of a single-ensemble file."""
    data = _toml(text, source)
    return _validate(data, text=text, source=source, prefix=(), context=context or {})


def _parse_named(
    text: str, source: str, context: dict[str, Any]
) -> tuple[dict[str, Ensemble], str | None]:
    """The ensembles of one file, and the default it names (if any)."""
    data = _toml(text, source)
    if "ensembles" not in data:
        ensemble = _validate(data, text=text, source=source, prefix=(), context=context)
        return {DEFAULT_ENSEMBLE: ensemble}, DEFAULT_ENSEMBLE
    unknown = sorted(set(data) - {"ensembles", "default", "providers"})
    if unknown:
        raise EnsembleError(
            f"{source}: {unknown[0]}: a file of named ensembles holds only ensembles, "
            "default and providers at its top level"
        )
    tables = data["ensembles"]
    if not isinstance(tables, dict) or not tables:
        raise EnsembleError(f"{source}: ensembles: expected at least one [ensembles.NAME] table")
    shared = data.get("providers", {})
    ensembles: dict[str, Ensemble] = {}
    for name, table in tables.items():
        if not _NAME.match(name):
            raise EnsembleError(f"{source}: ensembles.{name}: not a valid ensemble name")
        own = table.get("providers", {}) if isinstance(table, dict) else {}
        if not isinstance(shared, dict) or not isinstance(own, dict):
            raise EnsembleError(f"{source}: providers: expected [providers.NAME] tables")
        if isinstance(table, dict):
            table = {**table, "providers": {**shared, **own}}
        ensembles[name] = _validate(
            table, text=text, source=source, prefix=("ensembles", name), context=context
        )
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise EnsembleError(f"{source}: default: expected the name of an ensemble")
    return ensembles, default


def _version(files: Mapping[Path, str], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        digest.update(f"{shown}\0{files[path]}\0".encode())
    return digest.hexdigest()[:12]


def load_ensembles(path: Path) -> LoadedEnsembles:
    """Every ensemble at `path` (a file or a directory). Raises EnsembleError."""
    files: dict[Path, str] = {}
    try:
        return _load_ensembles(path, files)
    except EnsembleError as exc:
        # What the failed load read or tried to: a reload watches these for the fix.
        exc.files = dict(files)  # type: ignore[attr-defined]
        raise
    except (TypeError, AttributeError, RecursionError) as exc:
        # A value of an unexpected type the checks above did not foresee.
        error = EnsembleError(f"{path}: the file cannot be used: {exc}")
        error.files = dict(files)  # type: ignore[attr-defined]
        raise error from exc


def ensemble_files(directory: Path) -> list[Path]:
    """The ensemble files of a directory: regular `*.toml` files, not hidden ones (editors'
    lock and backup files start with a dot)."""
    return sorted(
        file
        for file in directory.glob("*.toml")
        if not file.name.startswith(".") and file.is_file()
    )


def _load_ensembles(path: Path, files: dict[Path, str]) -> LoadedEnsembles:
    ensembles: dict[str, Ensemble] = {}
    default: str | None = None
    if path.is_dir():
        root = path
        for file in ensemble_files(path):
            if not _NAME.match(file.stem):
                raise EnsembleError(f"{file}: the file name is not a valid ensemble name")
            text = files[file] = _read(file, "ensemble file")
            context: dict[str, Any] = {"base_dir": path, "files": files}
            ensembles[file.stem] = parse_ensemble(text, source=str(file), context=context)
        if not ensembles:
            raise EnsembleError(f"{path}: no *.toml ensemble files in the directory")
    else:
        root = path.parent
        text = files[path] = _read(path, "ensemble file")
        context = {"base_dir": path.parent, "files": files}
        ensembles, default = _parse_named(text, str(path), context)
    if default is None:
        # A lone ensemble is the default whatever its name; among several, "default" is.
        default = next(iter(ensembles)) if len(ensembles) == 1 else DEFAULT_ENSEMBLE
    if default not in ensembles:
        known = ", ".join(sorted(ensembles))
        raise EnsembleError(
            f"{path}: no ensemble named {default!r} to use by default ({known}); "
            f'name one "{DEFAULT_ENSEMBLE}" or set default = "NAME"'
        )
    return LoadedEnsembles(
        version=_version(files, root),
        loaded_at=datetime.now(UTC),
        source=path,
        ensembles=ensembles,
        default=default,
        files=dict(files),
    )


def load_ensemble(path: Path) -> Ensemble:
    """The default ensemble at `path`."""
    return load_ensembles(path).pick(None)[1]
