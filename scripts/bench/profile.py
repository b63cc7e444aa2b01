"""Profile the service under the saturation load with py-spy; the busiest functions, and
the service's CPU per pipeline split by phase, go to docs/benchmarks/profile.txt. Run it
before optimising (`pip install py-spy`):

    python -m scripts.bench.profile [--seconds 15] [--store sqlite|none] [--route ROUTE]

The phases are told apart by the service's own modules on each sampled stack (every thread:
the database's too), the innermost that names a phase winning; what names none (trio's
scheduler, Hypercorn's loop between requests) is `other`.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .load import closed_loop
from .processes import ensemble_file, service_env, started
from .scenarios import INSTANT_UPSTREAM

OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "profile.txt"

# (phase, what a stack frame's text holds when the sample is spent for it).
PHASES = (
    ("record", ("service/storage/", "sqlalchemy/", "sqlite3")),
    (
        "encode and send",
        (
            "service/api/writers/",
            "service/runs/frames.py",
            "chat_format.py",
            "hypercorn/",
            "h11/",
            "service/connections/",
        ),
    ),
    ("summary relay", ("service/pipeline/summary.py", "service/pipeline/summarize.py")),
    (
        "agents",
        (
            "service/pipeline/gather.py",
            "service/pipeline/answers.py",
            "service/pipeline/calls.py",
            "service/llm/",
            "openai/",
            "httpx2/",
            "httpcore2/",
        ),
    ),
    (
        "parse and admit",
        (
            "service/launch/",
            "service/api/contract/process_request.py",
            "service/api/access.py",
            "service/api/routes/",
            "service/limits/",
            "quart/",
            "quart_trio/",
            "werkzeug/",
        ),
    ),
    ("telemetry", ("service/telemetry/", "opentelemetry/", "prometheus_client/")),
)


@dataclass
class Profiled:
    """One profiled saturation run: py-spy's collapsed stacks and what the run did."""

    heading: str
    raw: str
    pipelines: int
    cpu_ms_per_pipeline: float

    def phases(self) -> dict[str, float]:
        """The service's CPU per pipeline (ms), split by the phase each sample was spent in."""
        samples: collections.Counter[str] = collections.Counter()
        for line in self.raw.splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            if any(frames[-1].startswith(idle) for idle in IDLE):
                continue
            samples[_phase(frames)] += int(count_text)
        total = sum(samples.values()) or 1
        return {
            phase: round(samples[phase] / total * self.cpu_ms_per_pipeline, 2)
            for phase in (*(name for name, _ in PHASES), "other")
        }

    def table(self) -> str:
        lines = [
            f"{self.heading}: {self.pipelines} pipelines at 32 clients, "
            f"{self.cpu_ms_per_pipeline:.2f} ms of service CPU per pipeline",
            "",
            "phase             ms per pipeline",
        ]
        lines += [f"{phase:<17} {ms:6.2f}" for phase, ms in self.phases().items()]
        return "\n".join(lines) + "\n"


async def profiled(work: Path, seconds: float, route: str, **env: str) -> Profiled:
    """The service (its defaults, and `env`) at saturation on the instant upstream, sampled
    by py-spy for `seconds` while 32 clients keep it busy."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    async with started(INSTANT_UPSTREAM, {}, work / "instant-profile.log") as fake:
        ensemble = ensemble_file(work / "profile.toml", 2, "bench-agent-0", "bench-summary-0")
        settings = service_env(fake.url, ensemble, **env)
        async with started(
            [sys.executable, "-m", "service"], settings, work / "svc-profile.log"
        ) as svc:
            await closed_loop(svc.url, 4, requests_each=5)
            raw = work / "profile-raw.txt"
            cpu_before = svc.cpu_seconds()
            loads = []

            async def load() -> None:
                loads.append(await closed_loop(svc.url, 32, duration_s=seconds + 2, route=route))

            sampling = ("--duration", str(int(seconds)), "--format", "raw", "--output", str(raw))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                await trio.run_process(
                    [py_spy, "record", "--pid", str(svc.process.pid), *sampling],
                    capture_stdout=True,
                    capture_stderr=True,
                )
            pipelines = len(loads[0].timings)
            cpu_ms = 1000 * (svc.cpu_seconds() - cpu_before) / max(pipelines, 1)
            store = "no store" if env.get("DATABASE_URL") == "none" else "SQLite store"
            return Profiled(f"{route}, {store}", raw.read_text(), pipelines, round(cpu_ms, 2))


async def phases(work: Path, seconds: float) -> dict[str, Any]:
    """Scenario 10: the CPU per pipeline by phase, on both routes, with the store on and
    off: where the next change should cut."""
    runs = []
    for route, env in (
        ("/api/process", {}),
        ("/api/process", {"DATABASE_URL": "none"}),
        ("/v1/chat/completions", {}),
    ):
        run = await profiled(work, seconds, route, **env)
        runs.append(
            {
                "heading": run.heading,
                "pipelines": run.pipelines,
                "cpu_ms_per_pipeline": run.cpu_ms_per_pipeline,
                "phases": run.phases(),
            }
        )
    return {"clients": 32, "seconds": seconds, "runs": runs}


async def profile(seconds: float, store: str, route: str) -> str:
    with tempfile.TemporaryDirectory(prefix="profile-") as scratch:
        env = {"DATABASE_URL": "none"} if store == "none" else {}
        run = await profiled(Path(scratch), seconds, route, **env)
        return run.table() + "\n" + summarize(run.raw)


# A sampled thread that only waits: trio's worker threads between jobs, the event loop in
# epoll. py-spy cannot always tell these from work; they are no CPU of any phase.
IDLE = ("WorkerThread._work (", "EpollIOManager.get_events (")


def _phase(frames: list[str]) -> str:
    for frame in reversed(frames):
        for phase, marks in PHASES:
            if any(mark in frame for mark in marks):
                return phase
    return "other"


def summarize(raw: str, top: int = 25) -> str:
    """Self time and total time per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples\n", "self %  function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.profile")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--store", choices=("sqlite", "none"), default="sqlite")
    parser.add_argument("--route", default="/api/process", help="or /v1/chat/completions")
    args = parser.parse_args()
    text = trio.run(profile, args.seconds, args.store, args.route)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
