"""`python -m scripts.bench.cluster` (`make cluster-bench`): the throughput of the cluster's
shape against one replica alone, on this machine.

    make cluster-bench                                  # 16 clients, 15 s per shape, 3 rounds
    python -m scripts.bench.cluster --clients 32 --seconds 30 --rounds 5

Three shapes, taken in turn for ROUNDS rounds (on a shared machine the load of others moves
between rounds; taking the shapes in turn spreads it over all three, and the median of each
is reported), each measured the same way (scripts/bench/load.py's closed
loop: CLIENTS clients streaming message after message for SECONDS, after a warm-up): one
replica reached directly, the same replica behind nginx (deploy/nginx.conf, as
`make cluster` renders it), and two replicas behind nginx. Every replica runs as `make
cluster` starts it, on the machine's PostgreSQL (a database of its own, made when missing)
and a Redis database of its own, with the mock LLM answering at once: what is measured is
the service and the balancer, not a model. On a machine of two cores the second replica has
no core of its own, so the shape shows what the balancer costs, not a gain.

It prints a table, and the machine's load average before and after (the numbers are only
comparable with the load they were measured under), and writes docs/benchmarks/cluster.json
(the median round of each shape, and every round).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import coredis
import trio

from scripts.cluster.__main__ import ensure_database
from scripts.cluster.processes import running_cluster

from .load import closed_loop, percentile

OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "cluster.json"
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fanout_bench_cluster"
# The cluster uses 15 and the tests 1 to 12: this one is emptied before each shape.
REDIS_URL = "redis://127.0.0.1:6379/14"
# The mock answers at once: the service's own work, nothing waited for.
MOCK = {"USE_LLM_MOCK": "true", "MOCK_FIRST_TOKEN_MS": "0", "MOCK_TOKEN_MS": "0"}
WARM_UP_S = 3.0
SHAPES = ("one replica, direct", "one replica behind nginx", "two replicas behind nginx")


@dataclass(frozen=True)
class Measured:
    shape: str
    clients: int
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    generator_busy: float


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def empty_redis() -> None:
    client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with client:
        await client.flushdb()


@asynccontextmanager
async def shape_url(shape: str, run_dir: Path) -> AsyncIterator[str]:
    """Where the clients of `shape` send their requests, while it runs."""
    env = {
        **os.environ,
        **MOCK,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "PYTHONUNBUFFERED": "1",
    }
    replicas = 2 if shape.startswith("two") else 1
    await empty_redis()
    async with running_cluster(run_dir, env, replicas=replicas) as cluster:
        yield cluster.replicas[0].url if shape.endswith("direct") else cluster.url


async def measure(shape: str, clients: int, seconds: float, run_dir: Path) -> Measured:
    async with shape_url(shape, run_dir) as url:
        await closed_loop(url, clients, duration_s=WARM_UP_S)
        result = await closed_loop(url, clients, duration_s=seconds)
    totals = [timing.total for timing in result.timings]
    return Measured(
        shape=shape,
        clients=clients,
        seconds=round(result.wall_s, 1),
        requests=len(result.timings),
        errors=len(result.errors),
        requests_per_s=round(len(result.timings) / result.wall_s, 1),
        p50_ms=round(percentile(totals, 0.5) * 1000, 1),
        p99_ms=round(percentile(totals, 0.99) * 1000, 1),
        generator_busy=round(result.generator_busy, 2),
    )


def median_of(runs: list[Measured]) -> Measured:
    """The run of the median requests/s (of an even count, the lower middle one)."""
    return sorted(runs, key=lambda run: run.requests_per_s)[(len(runs) - 1) // 2]


def table(runs: list[Measured]) -> str:
    rows = [median_of([run for run in runs if run.shape == shape]) for shape in SHAPES]
    every = {
        shape: ", ".join(str(run.requests_per_s) for run in runs if run.shape == shape)
        for shape in SHAPES
    }
    base = rows[0].requests_per_s
    lines = [
        "| shape | clients | requests/s | against one direct | p50 | p99 | errors "
        "| generator busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.shape} | {row.clients} | {row.requests_per_s} | "
            f"{row.requests_per_s / base:.2f}x | {row.p50_ms} ms | {row.p99_ms} ms | "
            f"{row.errors} | {row.generator_busy} |"
        )
    lines.append("")
    lines.extend(f"{shape}: requests/s of each round {every[shape]}" for shape in SHAPES)
    return "\n".join(lines)


async def run(clients: int, seconds: float, rounds: int) -> dict[str, object]:
    before = load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fanout-cluster-bench-") as scratch:
        for number in range(rounds):
            for shape in SHAPES:
                run_dir = Path(scratch) / str(len(rows))
                rows.append(await measure(shape, clients, seconds, run_dir))
                print(f"round {number + 1}, {shape}: {rows[-1].requests_per_s} requests/s")
    after = load_average()
    print(table(rows))
    print(f"load average (1, 5, 15 min): {before} before, {after} after")
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "load_average_before": before,
        "load_average_after": after,
        "medians": [asdict(median_of([r for r in rows if r.shape == s])) for s in SHAPES],
        "rows": [asdict(row) for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON written")
    arguments = parser.parse_args()
    ensure_database(DATABASE_URL)
    results = trio.run(run, arguments.clients, arguments.seconds, arguments.rounds)
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {arguments.out}")


if __name__ == "__main__":
    main()
