"""Which part of the service may import which: a table of floors, lowest first. A module
may import from a floor below its own, never from its own floor or above, so the arrows
between packages (and the modules at the package's root) run one way and no two parts
import each other. A new package or root module must be given its floor here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

FLOORS: list[tuple[str, ...]] = [
    # Values and rules every part shares.
    (
        "errors",
        "shapes",
        "principal",
        "urls",
        "key_parts",
        "client_address",
        "lifecycle",
        "event_ids",
        "redis_client",
    ),
    ("settings", "llm"),
    ("ensemble", "events", "healthcheck"),
    ("telemetry",),
    # The run free of HTTP; the store; the client's socket; log lines.
    ("pipeline", "storage", "connections", "logs"),
    ("auth",),
    ("limits",),
    ("runs",),
    ("resources",),
    # Starting a message: admit, store, run or follow. Evaluating ensembles (a command).
    ("launch", "evaluation"),
    ("api",),
    ("web",),
    ("app",),
    ("process",),
    ("__main__",),
]
FLOOR_OF = {f"service.{part}": number for number, parts in enumerate(FLOORS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_by(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, at any depth in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def part_of(name: str) -> str | None:
    """The package or root module of the service that `name` is in, if any."""
    parts = name.split(".")
    if parts[0] != "service" or len(parts) < 2:
        return None
    return f"service.{parts[1]}"


def wrong_way(imports: dict[str, set[str]]) -> list[str]:
    """Every import, as `importer -> imported`, that does not go to a lower floor."""
    found = []
    for importer, names in imports.items():
        here = part_of(importer)
        for name in sorted(names):
            there = part_of(name)
            if here is None or there is None or there == here or there not in FLOOR_OF:
                continue
            if FLOOR_OF[there] >= FLOOR_OF[here]:
                found.append(f"{importer} -> {name}")
    return found


def service_imports() -> dict[str, set[str]]:
    return {module_name(path): imported_by(path) for path in SERVICE.rglob("*.py")}


def test_every_part_of_the_service_has_a_floor() -> None:
    parts = {
        f"service.{path.stem}"
        for path in SERVICE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert parts - FLOOR_OF.keys() == set()
    assert FLOOR_OF.keys() - parts == set()


def test_every_import_goes_to_a_lower_floor() -> None:
    assert wrong_way(service_imports()) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("service.storage.store", "service.auth.authenticate"),  # up a floor
        ("service.pipeline.run", "service.storage"),  # the same floor
        ("service.events", "service.pipeline.context"),
    ],
)
def test_an_import_up_or_across_is_found(importer: str, imported: str) -> None:
    assert wrong_way({importer: {imported}}) == [f"{importer} -> {imported}"]


def test_relative_imports_are_resolved_to_the_module_they_name() -> None:
    names = imported_by(SERVICE / "telemetry" / "stream.py")
    assert "service.events" in names
    assert "service.telemetry.metrics" in names
    assert "service.llm.Usage" in names


def loaded_of(code: str, modules: Sequence[str]) -> list[str]:
    """Which of `modules` a fresh Python process has loaded once it has run `code`."""
    listed = f"import sys\n{code}\nprint(*(m for m in {tuple(modules)!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", listed],
        capture_output=True,
        text=True,
        check=True,
        cwd=SERVICE.parent,
    )
    return done.stdout.split()


def test_the_commands_load_no_run_machinery() -> None:
    """`llm-fanout keys ...` imports the contract's models, not the server, the web
    framework, the runs or the LLM client: a key is made in under a second (it took 2 s
    when the contract pulled in the runs through a constant)."""
    heavy = ("openai", "service.runs", "service.pipeline", "hypercorn.trio", "quart")
    assert loaded_of("import service.process.commands", heavy) == []
