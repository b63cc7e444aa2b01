"""The benchmark scenarios. Each returns a JSON-ready dict; `__main__` prints and plots them."""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import trio

from .load import (
    LoadResult,
    Timing,
    client,
    closed_loop,
    floor_loop,
    one_request,
    percentile,
    sdk_stream_loop,
)
from .processes import ROOT, ensemble_file, fake_upstream, service_env, started

# Scenario 1's upstream: agents answer in 200 ms; the summary's first token comes 50 ms
# after the call, then 19 more tokens 10 ms apart.
AGENT_S = 0.2
SUMMARY_FIRST_S = 0.05
SUMMARY_GAP_S = 0.01
SUMMARY_TOKENS = 20
CRITICAL_PATH_S = AGENT_S + SUMMARY_FIRST_S + (SUMMARY_TOKENS - 1) * SUMMARY_GAP_S
FIRST_TOKEN_PATH_S = AGENT_S + SUMMARY_FIRST_S

MODELS: dict[str, dict[str, Any]] = {
    "bench-agent": {"reply": "A short answer.", "first_token_delay_s": AGENT_S},
    "bench-summary": {
        "tokens": [f"t{i} " for i in range(SUMMARY_TOKENS)],
        "first_token_delay_s": SUMMARY_FIRST_S,
        "token_delay_s": SUMMARY_GAP_S,
    },
    "bench-agent-0": {"reply": "A short answer."},
    "bench-summary-0": {"tokens": [f"t{i} " for i in range(SUMMARY_TOKENS)]},
    "bench-stall": {"stall": True},
    # Scenario 11: an agent that thinks aloud, 200 tokens 10 ms apart.
    "bench-think": {"tokens": ["w "] * 200, "token_delay_s": 0.01},
}


def _ms(values: list[float]) -> dict[str, float]:
    return {
        f"p{int(share * 100)}": round(percentile(values, share) * 1000, 2)
        for share in (0.5, 0.9, 0.99)
    }


async def overhead(work: Path, client_counts: list[int], requests: int) -> dict[str, Any]:
    """Scenario 1: what the service adds to the upstream's own latency, by concurrency.

    The floor is the same calls made straight to the fake at the same concurrency; the
    overhead is the service's percentile minus the floor's.
    """
    rows = []
    async with started(fake_upstream(MODELS, work), {}, work / "fake-1.log") as fake:
        ensemble = ensemble_file(work / "overhead.toml", 2, "bench-agent", "bench-summary")
        env = service_env(fake.url, ensemble)
        async with started(_service_argv(), env, work / "service-1.log") as service:
            await closed_loop(service.url, 2, requests_each=2)  # warm up connections
            for clients in client_counts:
                # Enough samples for a p99 at low concurrency, a bounded run at high.
                each = requests if clients == 1 else max(10, 5 * requests // clients)
                floor = await _floor(fake.url, clients, each)
                result = await closed_loop(service.url, clients, requests_each=each)
                rows.append(
                    {
                        "clients": clients,
                        "requests": len(result.timings),
                        "errors": len(result.errors),
                        "service_total_ms": _ms([t.total for t in result.timings]),
                        "floor_total_ms": _ms([t.total for t in floor.timings]),
                        "service_first_token_ms": _ms(_firsts(result.timings)),
                        "floor_first_token_ms": _ms(_firsts(floor.timings)),
                        "overhead_total_ms": _minus(result.timings, floor.timings, total=True),
                        "overhead_first_token_ms": _minus(
                            result.timings, floor.timings, total=False
                        ),
                        "generator_busy": round(result.generator_busy, 2),
                    }
                )
    return {"nominal_critical_path_ms": round(CRITICAL_PATH_S * 1000, 1), "rows": rows}


# The floors measured in this run, by (clients, requests each): every scenario's fake is the
# same program with the same latencies, so one floor serves them all (a floor of 10 clients
# cost half a minute each time it was measured again).
_FLOORS: dict[tuple[int, int], LoadResult] = {}


async def _floor(fake_url: str, clients: int, each: int) -> LoadResult:
    key = (clients, each)
    if key not in _FLOORS:
        _FLOORS[key] = await floor_loop(
            f"{fake_url}/v1", clients, each, "bench-agent", "bench-summary"
        )
    return _FLOORS[key]


def _firsts(timings: list[Timing]) -> list[float]:
    return [t.first_token for t in timings if t.first_token is not None]


def _minus(service: list[Timing], floor: list[Timing], *, total: bool) -> dict[str, float]:
    def pick(timings: list[Timing]) -> list[float]:
        return [t.total for t in timings] if total else _firsts(timings)

    return {
        f"p{int(share * 100)}": round(
            (percentile(pick(service), share) - percentile(pick(floor), share)) * 1000, 2
        )
        for share in (0.5, 0.9, 0.99)
    }


async def saturation(work: Path, workers: list[int], duration_s: float) -> dict[str, Any]:
    """Scenario 2: pipelines per second with zero upstream latency, and CPU per pipeline."""
    rows = []
    async with started(INSTANT_UPSTREAM, {}, work / "instant-2.log") as fake:
        ensemble = ensemble_file(work / "zero.toml", 2, "bench-agent-0", "bench-summary-0")
        for count in workers:
            env = service_env(fake.url, ensemble, WORKERS=str(count))
            async with started(_service_argv(), env, work / f"service-2-{count}.log") as service:
                await closed_loop(service.url, 4, requests_each=5)
                cpu_before, fake_cpu_before = service.cpu_seconds(), fake.cpu_seconds()
                result = await closed_loop(service.url, 32, duration_s=duration_s)
                cpu = service.cpu_seconds() - cpu_before
                done = len(result.timings) - len(result.errors)
                rows.append(
                    {
                        "workers": count,
                        "pipelines": done,
                        "errors": len(result.errors),
                        "pipelines_per_s": round(done / result.wall_s, 1),
                        "service_cpu_ms_per_pipeline": round(cpu / max(done, 1) * 1000, 2),
                        "fake_cpu_busy": round(
                            (fake.cpu_seconds() - fake_cpu_before) / result.wall_s, 2
                        ),
                        "generator_busy": round(result.generator_busy, 2),
                    }
                )
    return {"upstream_calls_per_pipeline": 3, "rows": rows}


# (service environment, request headers, the route the load goes to)
Variant = tuple[dict[str, str], dict[str, str] | None, str]

# The service with its defaults on /api/process is the baseline of scenarios 6-9: measured
# once in a run, its row (here once measured) is shared by the scenarios after the first.
_DEFAULTS: dict[str, Any] = {}
PROCESS = "/api/process"


async def compare(
    work: Path, tag: str, requests: int, duration_s: float, variants: dict[str, Variant]
) -> list[dict[str, Any]]:
    """Each variant in a fresh service: the overhead at 10 clients over scenario 1's upstream
    (against one floor), then pipelines per second and CPU per pipeline at saturation over
    the instant upstream (32 clients). The first variant is the baseline of the others."""
    rows = []
    async with started(fake_upstream(MODELS, work), {}, work / f"fake-{tag}.log") as fake:
        latency = ensemble_file(work / f"{tag}.toml", 2, "bench-agent", "bench-summary")
        floor = await _floor(fake.url, 10, requests)
        async with started(INSTANT_UPSTREAM, {}, work / f"instant-{tag}.log") as instant:
            zero = ensemble_file(work / f"{tag}-0.toml", 2, "bench-agent-0", "bench-summary-0")
            for name, (extra, headers, route) in variants.items():
                defaults = not extra and headers is None and route == PROCESS
                if defaults and _DEFAULTS:
                    rows.append({**_DEFAULTS, "variant": name, "shared": True})
                    continue
                env = service_env(fake.url, latency, **extra)
                log = work / f"service-{tag}-{name}.log"
                async with started(_service_argv(), env, log) as service:
                    await closed_loop(service.url, 2, requests_each=2, headers=headers, route=route)
                    loaded = await closed_loop(
                        service.url, 10, requests_each=requests, headers=headers, route=route
                    )
                env = service_env(instant.url, zero, **extra)
                async with started(_service_argv(), env, log.with_suffix(".sat")) as service:
                    await closed_loop(service.url, 4, requests_each=5, headers=headers, route=route)
                    cpu_before = service.cpu_seconds()
                    saturated = await closed_loop(
                        service.url, 32, duration_s=duration_s, headers=headers, route=route
                    )
                    cpu = service.cpu_seconds() - cpu_before
                done = len(saturated.timings) - len(saturated.errors)
                rows.append(
                    {
                        "variant": name,
                        "errors": len(loaded.errors) + len(saturated.errors),
                        "overhead_total_ms": _minus(loaded.timings, floor.timings, total=True),
                        "pipelines_per_s": round(done / saturated.wall_s, 1),
                        "service_cpu_ms_per_pipeline": round(cpu / max(done, 1) * 1000, 2),
                    }
                )
                if defaults:
                    _DEFAULTS.update(rows[-1])
    base = rows[0]
    for row in rows:
        row["throughput_vs_base"] = round(row["pipelines_per_s"] / base["pipelines_per_s"], 3)
        row["p50_overhead_vs_base_ms"] = round(
            row["overhead_total_ms"]["p50"] - base["overhead_total_ms"]["p50"], 2
        )
        row["cpu_vs_base_ms"] = round(
            row["service_cpu_ms_per_pipeline"] - base["service_cpu_ms_per_pipeline"], 2
        )
    return rows


STORAGE_POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def storage(work: Path, requests: int, duration_s: float) -> dict[str, Any]:
    """Scenario 6: what keeping conversations costs: storage off, SQLite, PostgreSQL (a
    schema of its own, dropped after)."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{os.getpid()}"
    admin = create_engine(STORAGE_POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        postgres: str | None = f"{STORAGE_POSTGRES_URL}?options=-csearch_path%3D{schema}"
    except Exception as exc:  # unreachable: the table says so
        print(f"storage: PostgreSQL not measured ({exc.__class__.__name__})", flush=True)
        postgres = None
    variants: dict[str, Variant] = {
        "none": ({"DATABASE_URL": "none"}, None, PROCESS),
        "sqlite": ({}, None, PROCESS),  # the default: a fresh SQLite file
    }
    if postgres is not None:
        variants["postgresql"] = ({"DATABASE_URL": postgres}, None, PROCESS)
    try:
        rows = await compare(work, "s6", requests, duration_s, variants)
    finally:
        if postgres is not None:
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return {"clients": 10, "saturation_clients": 32, "rows": rows}


async def auth(work: Path, requests: int, duration_s: float) -> dict[str, Any]:
    """Scenario 7: what checking an API key costs (warm cache) against AUTH=none, on the
    same SQLite store."""
    database = f"sqlite:///{work / 'bench-auth.db'}"
    made = await trio.run_process(
        [sys.executable, "-m", "service", "keys", "create", "--user", "bench", "--json"],
        env={**os.environ, "DATABASE_URL": database},
        cwd=work,
        capture_stdout=True,
    )
    key = json.loads(made.stdout)["key"]
    variants: dict[str, Variant] = {
        "none": ({}, None, PROCESS),  # the default: AUTH=none
        "keys": (
            {"AUTH": "keys", "DATABASE_URL": database},
            {"Authorization": f"Bearer {key}"},
            PROCESS,
        ),
    }
    return {"clients": 10, "rows": await compare(work, "s7", requests, duration_s, variants)}


async def limits(work: Path, requests: int, duration_s: float) -> dict[str, Any]:
    """Scenario 8: what the limiter costs, off, in the process, and in Redis, with limits
    high enough never to refuse (every check still runs)."""
    policy = work / "bench-limits.toml"
    policy.write_text(
        "[anonymous]\nrequests_per_minute = 1000000\nburst = 1000000\n"
        "concurrent_streams = 100000\ntokens_per_minute = 1000000000\n"
    )
    variants: dict[str, Variant] = {
        "off": ({}, None, PROCESS),
        "memory": ({"LIMITS_FILE": str(policy)}, None, PROCESS),
        "redis": ({"LIMITS_FILE": str(policy), "REDIS_URL": BENCH_REDIS_URL}, None, PROCESS),
    }
    return {"clients": 10, "rows": await compare(work, "s8", requests, duration_s, variants)}


async def openai_route(work: Path, requests: int, duration_s: float) -> dict[str, Any]:
    """Scenario 9: the same load on POST /api/process and on /v1/chat/completions (stream)."""
    variants: dict[str, Variant] = {
        "api": ({}, None, PROCESS),
        "openai": ({}, None, "/v1/chat/completions"),
    }
    return {"clients": 10, "rows": await compare(work, "s9", requests, duration_s, variants)}


# The zero-latency scenarios' upstream: canned answers from one epoll loop, so that the CPU
# goes to the systems measured (the fake upstream cost about 2 ms per call).
INSTANT_UPSTREAM = [sys.executable, "-m", "scripts.bench.instant_upstream"]

# Streams opened and closed in a fresh service before it is measured (pools, caches).
WARM_UP_STREAMS = 100


async def open_streams(work: Path, counts: list[int]) -> dict[str, Any]:
    """Scenario 3: N streams held open by stalled agents: errors and memory per stream.

    A stream counts as open once the upstream (`stall_server`) holds both of its agents'
    calls: a call still waiting for a pooled connection is not open. The clients are plain
    sockets, so that opening thousands costs the generator little. Each N gets a fresh
    service, warmed up by a few streams: a process keeps the memory it once used, so in one
    process each row would only show what the streams added beyond the row before.
    """
    rows = []
    upstream_argv = [sys.executable, "-m", "scripts.bench.stall_server"]
    async with started(upstream_argv, {}, work / "stall-3.log") as upstream:
        ensemble = _stalling_ensemble(work / "stall.toml", upstream.url, 2 * max(counts))
        for count in counts:
            log = work / f"service-3-{count}.log"
            env = service_env(upstream.url, ensemble, SSE_KEEPALIVE_S="600")
            async with started(_service_argv(), env, log) as service:
                await _hold_streams(service, upstream.url, WARM_UP_STREAMS)
                rows.append(await _hold_streams(service, upstream.url, count))
    return {"warm_up_streams": WARM_UP_STREAMS, "rows": rows}


def _stalling_ensemble(path: Path, upstream: str, max_connections: int) -> Path:
    """Two agents on the stall server, with a pool that has room for every call."""
    return ensemble_file(
        path, 2, "bench-stall", "bench-stall", upstream=upstream, max_connections=max_connections
    )


async def _hold_streams(service: Any, upstream_url: str, count: int) -> dict[str, Any]:
    errors: list[str] = []
    await trio.sleep(0.5)
    rss_before = service.rss_bytes()
    calls_before = (await _status(upstream_url))["open"]
    opened = 0
    async with trio.open_nursery() as nursery:

        async def hold(number: int) -> None:
            try:
                stream = await _open_stream(service.url, f"hold {number}")
            except (OSError, trio.BrokenResourceError, ValueError) as exc:
                # A refused stream's status line, or what broke the connection.
                errors.append(str(exc) if isinstance(exc, ValueError) else type(exc).__name__)
                return
            await _drain(stream)

        for number in range(count):
            nursery.start_soon(hold, number)
        with trio.move_on_after(120):
            # Another process to ask: polling is the only way.
            while True:
                calls = (await _status(upstream_url))["open"] - calls_before
                if calls >= 2 * (count - len(errors)):
                    break
                await trio.sleep(0.2)
        await trio.sleep(1)
        opened = ((await _status(upstream_url))["open"] - calls_before) // 2
        rss_open = service.rss_bytes()
        nursery.cancel_scope.cancel()
    await trio.sleep(2)
    return {
        "streams": count,
        "open": opened,
        "errors": len(errors),
        "error_kinds": dict(collections.Counter(errors)),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_open_mib": round(rss_open / 2**20, 1),
        "kib_per_stream": round((rss_open - rss_before) / max(opened, 1) / 1024, 1),
    }


async def _open_stream(url: str, message: str) -> trio.SocketStream:
    """A client that posted `message` and got the stream's 200; ValueError for another."""
    stream = await trio.open_tcp_stream(*_host_port(url))
    await stream.send_all(_process_request(message))
    head = bytearray()
    while b"\r\n" not in head:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise trio.BrokenResourceError("closed before the response")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        await stream.aclose()
        raise ValueError(bytes(head.split(b"\r\n", 1)[0]).decode("latin-1"))
    return stream


async def disconnect_storm(work: Path, counts: list[int]) -> dict[str, Any]:
    """Scenario 4: clients hang up at once, `counts[i]` of them in run i; how soon each
    upstream call is closed.

    Both ends are lean so that they measure the service, not themselves: the clients are
    plain sockets closed in one tight loop, and the upstream (`stall_server`) is one epoll
    loop in its own process that notes each close on the machine-wide monotonic clock. The
    runs follow each other in one service, as storms would in production.
    """
    upstream_argv = [sys.executable, "-m", "scripts.bench.stall_server"]
    async with started(upstream_argv, {}, work / "stall-4.log") as upstream:
        ensemble = _stalling_ensemble(work / "storm.toml", upstream.url, 2 * max(counts))
        env = service_env(upstream.url, ensemble, SSE_KEEPALIVE_S="600")
        async with started(_service_argv(), env, work / "service-4.log") as service:
            return {"runs": [await _storm(service, upstream.url, count) for count in counts]}


async def _storm(service: Any, upstream_url: str, count: int) -> dict[str, Any]:
    closed_at: dict[str, float] = {}
    status_before = await _status(upstream_url)
    open_before, closed_before = status_before["open"], len(status_before["closed"])
    async with trio.open_nursery() as readers:
        streams = []
        for number in range(count):
            stream = await _open_stream(service.url, f"storm {number}")
            streams.append(stream)
            readers.start_soon(_drain, stream)
        with trio.fail_after(120):
            # Another process to ask: polling is the only way.
            while (await _status(upstream_url))["open"] - open_before < 2 * count:  # noqa: ASYNC110
                await trio.sleep(0.1)
        cpu_before = service.cpu_seconds()
        for number, stream in enumerate(streams):
            closed_at[f"storm {number}"] = time.monotonic()
            stream.socket.close()
    await trio.sleep(1)
    storm_cpu_s = service.cpu_seconds() - cpu_before
    status = await _status(upstream_url)
    per_request: dict[str, float] = {}
    for message, upstream_closed_at in status["closed"][closed_before:]:
        if message in closed_at:
            delay = upstream_closed_at - closed_at[message]
            per_request[message] = max(per_request.get(message, 0.0), delay)
    delays = list(per_request.values())
    return {
        "clients": count,
        "close_to_upstream_close_ms": {
            **_ms(delays),
            "max": round(max(delays, default=float("nan")) * 1000, 2),
        },
        "upstream_calls_open_after_1s": status["open"] - open_before,
        "service_cpu_ms": round(storm_cpu_s * 1000, 1),
    }


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# A message id per request of the run: with the store on (the default), an id sent again
# would be a replay of the stored message, not a new stream.
_MESSAGE_IDS = itertools.count(1)


def _process_request(message: str) -> bytes:
    message_id = f"{message.replace(' ', '-')}-{next(_MESSAGE_IDS)}"
    body = json.dumps({"message": message, "message_id": message_id}).encode()
    head = (
        "POST /api/process HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _drain(stream: trio.SocketStream) -> None:
    """Read what the service sends, so a close is a FIN rather than a reset."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass


async def _status(url: str) -> dict[str, Any]:
    async with await trio.open_tcp_stream(*_host_port(url)) as stream:
        await stream.send_all(b"GET /status HTTP/1.1\r\nhost: bench\r\n\r\n")
        response = bytearray()
        while chunk := await stream.receive_some(65536):
            response += chunk
    _, _, body = bytes(response).partition(b"\r\n\r\n")
    status: dict[str, Any] = json.loads(body)
    return status


LITELLM_READY = re.compile(rb"Uvicorn running on (http://127\.0\.0\.1:\d+)")


def litellm_binary() -> str | None:
    """LITELLM_BIN, or `litellm` on PATH: the peer is optional and never installed here."""
    return os.environ.get("LITELLM_BIN") or shutil.which("litellm")


async def peer(work: Path, duration_s: float) -> dict[str, Any]:
    """Scenario 5: LiteLLM proxy forwarding single streamed calls to the same fake, beside
    this service (a one-agent ensemble, and the usual three-call pipeline), with the fake
    called directly as the floor. Zero upstream latency, 32 clients, same machine and run."""
    binary = litellm_binary()
    if binary is None:
        return {
            "skipped": "LiteLLM proxy is not installed (pip install 'litellm[proxy]', or set "
            "LITELLM_BIN); no peer comparison in this run"
        }
    rows = []
    async with started(INSTANT_UPSTREAM, {}, work / "instant-5.log") as fake:
        rows.append(
            await _streams_per_s(
                "upstream, called directly", 1, fake, None, duration_s, f"{fake.url}/v1"
            )
        )
        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: bench-summary-0\n"
            "    litellm_params:\n"
            "      model: openai/bench-summary-0\n"
            f"      api_base: {fake.url}/v1\n"
            "      api_key: bench\n"
        )
        port = _free_port()
        argv = [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        # A local benchmark: no master key, no database, no telemetry of its own.
        litellm_env = {
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            "LITELLM_TELEMETRY": "False",
        }
        # LiteLLM takes most of a minute to import and start on this kind of machine.
        async with started(
            argv, litellm_env, work / "litellm.log", LITELLM_READY, startup_s=240
        ) as litellm:
            await sdk_stream_loop(f"{litellm.url}/v1", 4, 2, "bench-summary-0")
            rows.append(
                await _streams_per_s(
                    "LiteLLM proxy", 1, fake, litellm, duration_s, f"{litellm.url}/v1"
                )
            )
        for agents, label in ((1, "this service, 1 agent"), (2, "this service, 2 agents")):
            ensemble = ensemble_file(
                work / f"peer-{agents}.toml", agents, "bench-agent-0", "bench-summary-0"
            )
            env = service_env(fake.url, ensemble)
            async with started(_service_argv(), env, work / f"service-5-{agents}.log") as svc:
                await closed_loop(svc.url, 4, requests_each=5)
                cpu_before = svc.cpu_seconds()
                result = await closed_loop(svc.url, 32, duration_s=duration_s)
                done = len(result.timings) - len(result.errors)
                rows.append(
                    {
                        "system": label,
                        "upstream_calls_per_request": agents + 1,
                        "requests_per_s": round(done / result.wall_s, 1),
                        "cpu_ms_per_request": round(
                            (svc.cpu_seconds() - cpu_before) / max(done, 1) * 1000, 2
                        ),
                        "errors": len(result.errors),
                    }
                )
    return {"rows": rows}


async def _streams_per_s(
    label: str, calls: int, fake: Any, proxy: Any, duration_s: float, base_url: str
) -> dict[str, Any]:
    measured = proxy or fake
    cpu_before = measured.cpu_seconds()
    result = await sdk_stream_loop(base_url, 32, duration_s, "bench-summary-0")
    done = len(result.timings)
    return {
        "system": label,
        "upstream_calls_per_request": calls,
        "requests_per_s": round(done / result.wall_s, 1),
        "cpu_ms_per_request": round((measured.cpu_seconds() - cpu_before) / max(done, 1) * 1000, 2),
        "errors": len(result.errors),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _service_argv() -> list[str]:
    return [sys.executable, "-m", "service"]


async def quick_check(url: str) -> None:
    async with client(url, 1) as http:
        await one_request(http)


async def agent_streaming(
    work: Path, clients: int, duration_s: float, open_streams: int
) -> dict[str, Any]:
    """Scenario 11: two agents of 200 tokens streamed 10 ms apart, with agent streaming off
    and on, each in a fresh service: pipelines per second and service CPU per pipeline at
    `clients` concurrent clients, the agent.delta frames per agent per second of one stream
    read alone, and memory per stream with `open_streams` held open."""
    rows = []
    async with started(fake_upstream(MODELS, work), {}, work / "fake-s11.log") as fake:
        ensemble = ensemble_file(work / "s11.toml", 2, "bench-think", "bench-summary-0")
        for name, extra in (("off", {"STREAM_AGENTS": "false"}), ("on", {})):
            env = service_env(fake.url, ensemble, **extra)
            async with started(_service_argv(), env, work / f"service-s11-{name}.log") as service:
                await closed_loop(service.url, 2, requests_each=1)
                frames = await _delta_frames(service.url)
                cpu_before = service.cpu_seconds()
                loaded = await closed_loop(service.url, clients, duration_s=duration_s)
                cpu = service.cpu_seconds() - cpu_before
            done = len(loaded.timings) - len(loaded.errors)
            rows.append(
                {
                    "variant": name,
                    "errors": len(loaded.errors),
                    "pipelines_per_s": round(done / loaded.wall_s, 2),
                    "service_cpu_ms_per_pipeline": round(cpu / max(done, 1) * 1000, 2),
                    "delta_frames_per_agent_per_s": frames,
                }
            )
        # What reading the two answers token by token costs any client of the SDK alone.
        reading = await _upstream_read(fake.url, clients)
    memory = await _memory_on_and_off(work, open_streams)
    off, on = rows
    cpu_more = on["service_cpu_ms_per_pipeline"] - off["service_cpu_ms_per_pipeline"]
    read_more = 2 * (reading["streamed_cpu_ms_per_call"] - reading["whole_cpu_ms_per_call"])
    return {
        "clients": clients,
        "rows": rows,
        "throughput_on_vs_off": round(on["pipelines_per_s"] / off["pipelines_per_s"], 3),
        "cpu_on_minus_off_ms": round(cpu_more, 2),
        "upstream_read": reading,
        "cpu_reading_two_streams_ms": round(read_more, 2),
        "cpu_on_minus_off_beyond_reading_ms": round(cpu_more - read_more, 2),
        "memory": memory,
        "memory_on_minus_off_kib": round(
            memory["on"]["kib_per_stream"] - memory["off"]["kib_per_stream"], 1
        ),
    }


async def _memory_on_and_off(work: Path, count: int) -> dict[str, Any]:
    """Memory per open stream (agents stalled, as in scenario 3) with agent streaming off
    and on, each in a fresh service."""
    found = {}
    upstream_argv = [sys.executable, "-m", "scripts.bench.stall_server"]
    async with started(upstream_argv, {}, work / "stall-11.log") as upstream:
        ensemble = _stalling_ensemble(work / "stall-11.toml", upstream.url, 2 * count)
        for name, extra in (("off", {"STREAM_AGENTS": "false"}), ("on", {})):
            log = work / f"service-11-memory-{name}.log"
            env = service_env(upstream.url, ensemble, SSE_KEEPALIVE_S="600", **extra)
            async with started(_service_argv(), env, log) as service:
                await _hold_streams(service, upstream.url, WARM_UP_STREAMS)
                found[name] = await _hold_streams(service, upstream.url, count)
    return found


async def _upstream_read(url: str, concurrency: int) -> dict[str, float]:
    argv = [sys.executable, "-m", "scripts.bench.upstream_read", url, "bench-think"]
    done = await trio.run_process([*argv, str(concurrency), "3"], cwd=ROOT, capture_stdout=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


async def _delta_frames(url: str) -> float:
    """agent.delta events per agent per second of its streaming, in one stream read alone."""
    import httpx2

    seen: dict[str, list[float]] = collections.defaultdict(list)
    async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
        body = {"message": "Think aloud", "message_id": f"s11-{time.time_ns()}"}
        async with http.stream("POST", PROCESS, json=body) as response:
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "agent.delta":
                    seen[json.loads(line[6:])["source"]].append(trio.current_time())
    rates = [(len(times) - 1) / (times[-1] - times[0]) for times in seen.values() if len(times) > 1]
    return round(max(rates, default=0.0), 1)
