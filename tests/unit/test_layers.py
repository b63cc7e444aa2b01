"""Which package may import which: the pipeline's consumers depend on its events, not on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

# (importer, what it must never import): each a dotted prefix.
FORBIDDEN = [
    ("service.telemetry", "service.pipeline"),
    ("service.telemetry", "service.api"),
    ("service.events", "service.pipeline"),
    ("service.events", "service.telemetry"),
    ("service.events", "service.api"),
    ("service.pipeline", "service.api"),
]


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


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN)
def test_a_layer_never_imports_the_one_it_must_not_know(importer: str, forbidden: str) -> None:
    files = [p for p in SERVICE.rglob("*.py") if within(module_name(p), importer)]
    assert files, f"no modules found for {importer}"
    offenders = {
        module_name(path): sorted(n for n in imported_by(path) if within(n, forbidden))
        for path in files
    }
    assert {name: names for name, names in offenders.items() if names} == {}


def test_relative_imports_are_resolved_to_the_module_they_name() -> None:
    names = imported_by(SERVICE / "telemetry" / "stream.py")
    assert "service.events" in names
    assert "service.telemetry.metrics" in names
    assert "service.llm.Usage" in names
