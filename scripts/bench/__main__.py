"""`python -m scripts.bench` (`make bench`): every scenario, a table each, JSON and plots.

python -m scripts.bench                   # the full run (about 12 minutes; the peer: LITELLM_BIN)
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
from .report import plot, print_tables, print_targets, targets

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

# Scenario 4: five storms of 500 clients (the target holds in every run), then one of 2,000.
STORM_RUN, STORM_RUNS, STORM_LARGE = 500, 5, 2000
# Scenario 1's requests at one client (quick, full); other rows scale from it.
OVERHEAD_REQUESTS = {True: 10, False: 60}


async def run(only: tuple[str, ...], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        # Requests per client of scenarios 6-9's ten clients: scenario 1's ten-client row, so
        # that they share its floor.
        compared = 5 * OVERHEAD_REQUESTS[quick] // 10
        # Seconds at saturation per variant of scenarios 6-9 (a few hundred pipelines).
        saturated_s = 3 if quick else 6
        plan = {
            "overhead": lambda: scenarios.overhead(
                work, [1, 10] if quick else [1, 10, 50, 100], OVERHEAD_REQUESTS[quick]
            ),
            "saturation": lambda: scenarios.saturation(work, [1, 2], 3 if quick else 10),
            "streams": lambda: scenarios.open_streams(work, [200, 500] if quick else [500, 2000]),
            "storm": lambda: scenarios.disconnect_storm(
                work, [100, 100] if quick else [*[STORM_RUN] * STORM_RUNS, STORM_LARGE]
            ),
            "peer": lambda: scenarios.peer(work, 3 if quick else 10),
            "storage": lambda: scenarios.storage(work, compared, saturated_s),
            "auth": lambda: scenarios.auth(work, compared, saturated_s),
            "limits": lambda: scenarios.limits(work, compared, saturated_s),
            "openai": lambda: scenarios.openai_route(work, compared, saturated_s),
            "phases": lambda: profile.phases(work, 4 if quick else 10),
            "agent_streaming": lambda: scenarios.agent_streaming(
                work, 8 if quick else 16, 5 if quick else 10, 200 if quick else 1000
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
    results["targets"] = targets(results)
    print_targets(results["targets"])
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
