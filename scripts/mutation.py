"""Mutation testing of the modules that decide who may do what: change one thing at a time,
run the tests of that area, and count the changes some test noticed.

    python -m scripts.mutation service/auth/keys.py            # its area's tests (AREA_TESTS)
    python -m scripts.mutation service/limits/memory.py --tests tests/limits/test_backends.py
    make mutation MODULES="service/auth/keys.py service/api/access.py"

The mutations (the families the issue that asked for this names): a comparison flipped
(`<` to `>=`, `==` to `!=`, `in` to `not in`), a bound moved by one (`<` to `<=`, an
integer compared against plus one), a condition negated (`if`, `while`, `x if c else y`),
`and` and `or` swapped, a `raise` dropped, a `return` replaced with `return None`, and one
condition dropped from a `.where(...)` (the owner filters). Each mutant is the module
rewritten (`ast.unparse`) into a copy of the work tree, so the tree itself is never
touched and subprocesses (`python -m service`) import the mutant through PYTHONPATH.

mutmut (3.x) was tried first: its stats run could not drive this suite (tests that start
`python -m service` import the unmutated package), so this small runner is the tool.
Not in CI: a module takes minutes to hours on two cores.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The tests of each module's area: what `make mutation` runs when no --tests is given.
AREA_TESTS: dict[str, list[str]] = {
    "service/auth/keys.py": ["tests/auth"],
    "service/auth/authenticate.py": ["tests/auth"],
    "service/auth/tokens.py": ["tests/auth"],
    "service/auth/failures.py": ["tests/auth"],
    "service/api/access.py": ["tests/auth"],
    "service/limits/memory.py": ["tests/limits"],
    "service/limits/admission.py": ["tests/limits"],
    "service/storage/queries.py": ["tests/storage"],
}

FLIPPED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
MOVED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the how-manieth mutation site of the module, in walk order
    line: int
    what: str


class Mutator(ast.NodeTransformer):
    """Walks a module; counts every mutation site, and applies the one numbered `target`
    (None: apply none, only list them)."""

    def __init__(self, target: int | None, only: frozenset[str] | None = None) -> None:
        self.target = target
        self.only = only
        self.scope = ""  # the top-level function or assignment being walked
        self.sites: list[tuple[int, str]] = []

    def _site(self, node: ast.AST, what: str) -> bool:
        """Register a site; True if it is the one to apply."""
        if self.only is not None and self.scope not in self.only:
            return False
        self.sites.append((getattr(node, "lineno", 0), what))
        return len(self.sites) - 1 == self.target

    # -- statements ----------------------------------------------------------------------

    def visit_If(self, node: ast.If) -> ast.AST:
        if _is_type_checking(node.test):
            return node
        if self._site(node, "negate the if condition"):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
            return node
        return self.generic_visit(node)

    def visit_While(self, node: ast.While) -> ast.AST:
        if not (isinstance(node.test, ast.Constant) and node.test.value is True) and self._site(
            node, "negate the while condition"
        ):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        if self._site(node, "negate the conditional expression"):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        if self._site(node, "drop the raise"):
            return ast.Pass()
        return self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        if (
            node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
            and self._site(node, "return None instead")
        ):
            node.value = ast.Constant(None)
            return node
        return self.generic_visit(node)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        return node  # a type narrowing for mypy, not behaviour

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # a docstring
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node  # the annotation is not behaviour

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if self.scope == "" and isinstance(node.targets[0], ast.Name):
            self.scope = node.targets[0].id
            try:
                return self.generic_visit(node)
            finally:
                self.scope = ""
        return self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        if self.scope == "":
            self.scope = node.name
            try:
                return self._function(node)
            finally:
                self.scope = ""
        node.body = [self.visit(statement) for statement in node.body]
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        return node  # annotations and decorators are left alone

    # -- expressions ---------------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        for position, op in enumerate(node.ops):
            flipped = FLIPPED.get(type(op))
            if flipped is not None and self._site(node, f"flip {_op(op)} to {_op(flipped())}"):
                node.ops[position] = flipped()
                return node
            moved = MOVED.get(type(op))
            if moved is not None and self._site(
                node, f"move the bound: {_op(op)} to {_op(moved())}"
            ):
                node.ops[position] = moved()
                return node
        for position, operand in enumerate([node.left, *node.comparators]):
            if _is_int(operand):
                assert isinstance(operand, ast.Constant)
                if self._site(node, f"move the bound: {operand.value} to {operand.value + 1}"):
                    bumped = ast.Constant(operand.value + 1)
                    if position == 0:
                        node.left = bumped
                    else:
                        node.comparators[position - 1] = bumped
                    return node
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        swapped: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._site(node, f"swap {_op(node.op)} for {_op(swapped)}"):
            node.op = swapped
            return node
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "where"
            and len(node.args) >= 2
        ):
            for position, condition in enumerate(node.args):
                if self._site(node, f"drop the filter condition {ast.unparse(condition)}"):
                    node.args = node.args[:position] + node.args[position + 1 :]
                    return node
        return self.generic_visit(node)


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _is_int(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
    )


def _op(op: ast.AST) -> str:
    return {
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Lt: "<",
        ast.LtE: "<=",
        ast.Gt: ">",
        ast.GtE: ">=",
        ast.In: "in",
        ast.NotIn: "not in",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.And: "and",
        ast.Or: "or",
    }[type(op)]


def mutants_of(
    module: str, only: frozenset[str] | None = None, *, source: str | None = None
) -> list[Mutant]:
    lister = Mutator(None, only)
    lister.visit(ast.parse(source if source is not None else (ROOT / module).read_text()))
    return [Mutant(module, i, line, what) for i, (line, what) in enumerate(lister.sites)]


def mutated_source(source: str, index: int, only: frozenset[str] | None = None) -> str:
    tree = ast.parse(source)
    Mutator(index, only).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def copy_of_tree(into: Path) -> None:
    """The work tree as it is (uncommitted changes included), without caches or venvs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_tests(tree: Path, tests: list[str], timeout_s: float | None) -> tuple[str, float]:
    """'passed', 'failed' or 'timeout', and the seconds it took."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        # A mutant and the original can have the same size and mtime: never trust a .pyc.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    return ("passed" if done.returncode == 0 else "failed"), time.monotonic() - started


def measure(
    module: str,
    tests: list[str],
    tree: Path,
    *,
    only: frozenset[str] | None,
    verbose: bool,
) -> list[tuple[Mutant, str]]:
    original = (tree / module).read_text()
    baseline, took = run_tests(tree, tests, None)
    if baseline != "passed":
        # Nothing can be measured with tests that fail as they are; the other modules can.
        print(f"{module}: its tests ({' '.join(tests)}) fail without any mutation", flush=True)
        return []
    timeout_s = max(3 * took, took + 30)
    results: list[tuple[Mutant, str]] = []
    # Every mutant is made from the copy's text: the work tree may change during the run.
    mutants = mutants_of(module, only, source=original)
    print(f"{module}: {len(mutants)} mutants, tests take {took:.0f} s", flush=True)
    try:
        for mutant in mutants:
            (tree / module).write_text(mutated_source(original, mutant.index, only))
            outcome, _ = run_tests(tree, tests, timeout_s)
            verdict = "survived" if outcome == "passed" else "killed"
            results.append((mutant, verdict))
            if verbose or verdict == "survived":
                print(f"  {verdict:8} {module}:{mutant.line} {mutant.what}", flush=True)
    finally:
        (tree / module).write_text(original)
    return results


def report(all_results: dict[str, list[tuple[Mutant, str]]]) -> Iterator[str]:
    yield "| module | mutants | killed | survived | score |"
    yield "|---|---|---|---|---|"
    for module, results in all_results.items():
        killed = sum(1 for _, verdict in results if verdict == "killed")
        total = len(results)
        score = f"{100 * killed / total:.0f}%" if total else "-"
        name = module.removeprefix("service/")
        yield f"| {name} | {total} | {killed} | {total - killed} | {score} |"
    for module, results in all_results.items():
        survivors = [m for m, verdict in results if verdict == "survived"]
        if survivors:
            yield ""
            yield f"Survivors in {module}:"
            for mutant in survivors:
                yield f"- line {mutant.line}: {mutant.what}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", help="e.g. service/auth/keys.py")
    parser.add_argument("--tests", nargs="+", help="the tests to run (default: the area's)")
    parser.add_argument(
        "--functions",
        help="comma-separated top-level functions (or assigned names) to mutate; default all",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--verbose", action="store_true", help="print every mutant's verdict")
    parser.add_argument("--report", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    only = frozenset(args.functions.split(",")) if args.functions else None
    if args.list:
        for module in args.modules:
            for mutant in mutants_of(module, only):
                print(f"{module}:{mutant.line} #{mutant.index} {mutant.what}")
        return
    all_results: dict[str, list[tuple[Mutant, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as directory:
        tree = Path(directory)
        copy_of_tree(tree)
        for module in args.modules:
            tests = args.tests or AREA_TESTS.get(module)
            if not tests:
                raise SystemExit(f"{module}: no area tests known; give --tests")
            all_results[module] = measure(module, tests, tree, only=only, verbose=args.verbose)
    lines = list(report(all_results))
    print("\n".join(lines))
    if args.report is not None:
        args.report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
