"""Instructions per pipeline: the service's CPU cost counted, not timed, so that two versions
can be compared on a busy machine (callgrind counts the same for the same work whatever else
runs; a timed CPU figure here moved by 10% from run to run).

    python -m scripts.bench.instructions [--pipelines 80] [--clients 8] [ENV=VALUE ...]

The service runs under `valgrind --tool=callgrind` (about 50 times slower) against the
instant upstream, with its defaults unless ENV=VALUE says else (`DATABASE_URL=none`). Its
counters are zeroed after a warm-up, the pipelines are run, and the instructions of every
thread of the process are divided among them. Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import trio

from .load import closed_loop
from .processes import ensemble_file, service_env, started
from .scenarios import INSTANT_UPSTREAM

# The whole-process total callgrind writes at the end of a dump.
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


async def instructions(pipelines: int, clients: int, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="instructions-") as scratch:
        work = Path(scratch)
        async with started(INSTANT_UPSTREAM, {}, work / "instant.log") as fake:
            ensemble = ensemble_file(work / "e.toml", 2, "bench-agent-0", "bench-summary-0")
            argv = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={work}/callgrind.out",
                sys.executable,
                "-m",
                "service",
            ]
            settings = service_env(fake.url, ensemble, **env)
            async with started(argv, settings, work / "service.log", startup_s=600) as service:
                pid = str(service.process.pid)
                await closed_loop(service.url, clients, requests_each=4)
                await trio.run_process(
                    ["callgrind_control", "--zero", pid], capture_stdout=True, capture_stderr=True
                )
                result = await closed_loop(
                    service.url, clients, requests_each=max(pipelines // clients, 1)
                )
                await trio.run_process(
                    ["callgrind_control", "--dump", pid], capture_stdout=True, capture_stderr=True
                )
        total = _dumped_total(work)
    done = len(result.timings) - len(result.errors)
    return {
        "pipelines": done,
        "errors": len(result.errors),
        "million_instructions_per_pipeline": round(total / max(done, 1) / 1e6, 2),
    }


def _dumped_total(work: Path) -> int:
    """The instructions in the dump taken on request (numbered after the main output)."""
    dumps = sorted(work.glob("callgrind.out.*"), key=lambda path: path.stat().st_mtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    found = TOTALS.search(dumps[0].read_bytes())
    if found is None:
        raise RuntimeError(f"no totals in {dumps[0].name}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.instructions")
    parser.add_argument("--pipelines", type=int, default=80)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("env", nargs="*", help="ENV=VALUE settings for the service")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    env = dict(item.split("=", 1) for item in args.env)
    print(trio.run(instructions, args.pipelines, args.clients, env))


if __name__ == "__main__":
    main()
