"""`python -m scripts.bench` (`make bench`): every scenario, a table each, JSON and plots.

python -m scripts.bench                   # the full run (about 20 minutes on 2 cores)
python -m scripts.bench --quick           # smaller counts, for a smoke test
python -m scripts.bench --only overhead,storm
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from . import profile, scenarios, strategies
from .report import plot, print_tables

OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
ALL = (
    "overhead",
    "saturation",
    "streams",
    "storm",
    "peer",
    "storage",
    "auth",
    "limits",
    "openai",
    "phases",
    "agent_streaming",
    "strategies",
)


async def run(only: tuple[str, ...], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        plan = {
            "overhead": lambda: scenarios.overhead(
                work, [1, 10] if quick else [1, 10, 50, 100], 10 if quick else 60
            ),
            "saturation": lambda: scenarios.saturation(work, [1, 2], 3 if quick else 10),
            "streams": lambda: scenarios.open_streams(
                work, [200, 500] if quick else [500, 1000, 2000, 5000]
            ),
            "storm": lambda: scenarios.disconnect_storm(work, 100 if quick else 500),
            "peer": lambda: scenarios.peer(work, 3 if quick else 10),
            "storage": lambda: scenarios.storage(work, 10 if quick else 60, 3 if quick else 10),
            "auth": lambda: scenarios.auth(work, 10 if quick else 60, 3 if quick else 10),
            "limits": lambda: scenarios.limits(work, 10 if quick else 60, 3 if quick else 10),
            "openai": lambda: scenarios.openai_route(work, 10 if quick else 60, 3 if quick else 10),
            "phases": lambda: profile.phases(work, 4 if quick else 10),
            "agent_streaming": lambda: scenarios.agent_streaming(
                work, 8 if quick else 16, 5 if quick else 15, 200 if quick else 1000
            ),
            "strategies": lambda: strategies.strategies(
                work, 4 if quick else 8, 0.5 if quick else 1.2, 2 if quick else 5
            ),
        }
        for name in only:
            print(f"running {name} ...", flush=True)
            began = trio.current_time()
            try:
                results[name] = await plan[name]()
            except Exception as exc:
                # One broken scenario must not cost the others' results.
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                print(f"{name} failed: {exc!r}", flush=True)
            # What each scenario adds to the run's length (the whole run has a budget).
            print(f"{name}: {trio.current_time() - began:.0f} s", flush=True)
    return results


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench")
    parser.add_argument("--quick", action="store_true", help="smaller counts, a smoke test")
    parser.add_argument("--only", default=",".join(ALL), help=f"some of {', '.join(ALL)}")
    parser.add_argument("--out", type=Path, default=OUT, help="where JSON and plots go")
    args = parser.parse_args()
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    results = trio.run(run, only, args.quick)
    print_tables(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    # A run of some scenarios keeps the others' last results.
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged |= results
    path.write_text(json.dumps(merged, indent=2) + "\n")
    for path in plot(merged, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
