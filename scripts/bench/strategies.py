"""Scenario 12: what each deliberation strategy costs the service per upstream call it makes,
against answer-then-summarize (the issue's target: within 10%).

Each strategy runs in a fresh service over the same upstream (`deliberating_upstream`, the
fake with replies a council's review and a selector's choice can be read from): three agents
answering at once, a closed loop of a few clients, in slices taken in turn. Per strategy:
pipelines per second, the upstream calls per request as the fake counted them (checked
against the ensemble's `calls_per_request`), the service's CPU per pipeline and per upstream
call.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from service.ensemble import load_ensemble

from .load import closed_loop
from .processes import Running, ensemble_file, service_env, started

AGENTS = 3
# (strategy, its [deliberation] options), the baseline first.
STRATEGIES: tuple[tuple[str, dict[str, int]], ...] = (
    ("summarize", {}),
    ("vote", {}),
    ("usc", {}),
    ("council", {}),
    ("moa", {"layers": 3}),
    ("debate", {"rounds": 2}),
)
# The target: a strategy's CPU per upstream call at most 10% above summarize's.
TARGET_RATIO = 1.10
UPSTREAM = [sys.executable, "-m", "scripts.bench.deliberating_upstream"]


async def strategies(work: Path, clients: int, slice_s: float, passes: int) -> dict[str, Any]:
    """Scenario 12: every strategy in a fresh service of its own, all started first, then
    loaded in turn by `clients` clients for `slice_s`, `passes` times over (each pass in
    another order): a machine's other work then weighs on every strategy alike, not on
    whichever ran while it lasted."""
    began = time.monotonic()
    async with started(UPSTREAM, {}, work / "fake-s12.log") as fake, AsyncExitStack() as stack:
        runs = []
        for strategy, options in STRATEGIES:
            run = Measured(strategy, options, _ensemble(work, strategy, options))
            env = service_env(fake.url, run.ensemble)
            log = work / f"svc-s12-{strategy}.log"
            run.service = await stack.enter_async_context(started(SERVICE, env, log))
            await closed_loop(run.service.url, 2, requests_each=2)
            await check_deliberation(run.service.url, strategy)
            runs.append(run)
        for number in range(passes):
            for run in runs[number % len(runs) :] + runs[: number % len(runs)]:
                await run.load(fake.url, clients, slice_s)
    rows = [run.row() for run in runs]
    base = rows[0]["service_cpu_ms_per_call"]
    for row in rows:
        ratio = row["service_cpu_ms_per_call"] / base
        row["cpu_per_call_vs_summarize"] = round(ratio, 3)
        row["target_met"] = ratio <= TARGET_RATIO
    return {
        "agents": AGENTS,
        "clients": clients,
        "seconds": round(slice_s * passes, 1),
        "passes": passes,
        "target_ratio": TARGET_RATIO,
        "rows": rows,
        "wall_s": round(time.monotonic() - began, 1),
    }


SERVICE = [sys.executable, "-m", "service"]


def _ensemble(work: Path, strategy: str, options: dict[str, int]) -> Path:
    return ensemble_file(
        work / f"s12-{strategy}.toml",
        AGENTS,
        "bench-answer",
        None if strategy == "vote" else "bench-judge",
        strategy=strategy,
        deliberation=options,
    )


@dataclass
class Measured:
    """One strategy's service and what its slices of load added up to."""

    strategy: str
    options: dict[str, int]
    ensemble: Path
    service: Running | None = None
    sent: int = 0
    errors: int = 0
    calls: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    generator_cpu_s: float = 0.0

    async def load(self, upstream: str, clients: int, seconds: float) -> None:
        assert self.service is not None
        calls_before, cpu_before = await upstream_calls(upstream), self.service.cpu_seconds()
        loaded = await closed_loop(self.service.url, clients, duration_s=seconds)
        self.cpu_s += self.service.cpu_seconds() - cpu_before
        self.calls += await upstream_calls(upstream) - calls_before
        self.sent += len(loaded.timings)
        self.errors += len(loaded.errors)
        self.wall_s += loaded.wall_s
        self.generator_cpu_s += loaded.generator_cpu_s

    def row(self) -> dict[str, Any]:
        configured = load_ensemble(self.ensemble).calls_per_request
        done = self.sent - self.errors
        return {
            "strategy": self.strategy,
            "options": self.options,
            "requests": self.sent,
            "errors": self.errors,
            "pipelines_per_s": round(done / self.wall_s, 1),
            "upstream_calls": self.calls,
            "upstream_calls_per_request": round(self.calls / max(self.sent, 1), 2),
            "configured_calls_per_request": configured,
            "calls_as_configured": self.calls == configured * self.sent,
            "service_cpu_ms_per_pipeline": round(1000 * self.cpu_s / max(done, 1), 2),
            "service_cpu_ms_per_call": round(1000 * self.cpu_s / max(self.calls, 1), 3),
            "generator_busy": round(self.generator_cpu_s / self.wall_s, 2),
        }


async def upstream_calls(upstream: str) -> int:
    """The chat calls the upstream has recorded so far."""
    async with httpx2.AsyncClient(base_url=upstream, timeout=10) as http:
        counts: dict[str, Any] = (await http.get("/calls")).raise_for_status().json()
    return int(counts["calls"])


async def check_deliberation(url: str, strategy: str) -> None:
    """One request read whole: it must end in `done` with no agent failed, and the fake's
    replies must do what the strategy needs of them (each review's ranking read, the
    selector's choice read), or the scenario would measure a run that fell back."""
    events = await _events(url, f"Strategy check {time.time_ns()}")
    kinds = [kind for kind, _ in events]
    problems = []
    if not kinds or kinds[-1] != "done":
        problems.append(f"ended with {kinds[-1:] or 'nothing'}")
    if "agent.failed" in kinds:
        problems.append("an agent failed")
    if strategy == "council":
        rankings = [data.get("ranking") for kind, data in events if kind == "council.review"]
        if len(rankings) != AGENTS or None in rankings:
            problems.append(f"reviews ranked: {rankings}")
    if strategy in ("vote", "usc"):
        reasons = [data.get("reason", "") for kind, data in events if kind == "answer.chosen"]
        wanted = "selector chose Response 1" if strategy == "usc" else f"{AGENTS} of {AGENTS}"
        if len(reasons) != 1 or wanted not in reasons[0]:
            problems.append(f"chosen: {reasons}")
    if problems:
        raise RuntimeError(f"strategy {strategy}: {'; '.join(problems)}")


async def _events(url: str, message: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
        body = {"message": message, "message_id": message.replace(" ", "-")}
        async with http.stream("POST", "/api/process", json=body) as response:
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
    return events
