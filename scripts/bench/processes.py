"""The processes a benchmark runs: the fake upstream and `python -m service`, each in its
own process with its own CPU, and readings of their CPU time and memory from /proc."""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
# The bound address, as the service (Hypercorn), the fake upstream and the bench's servers
# print it; the service's start block names the configured one (port 0) before it.
RUNNING_ON = re.compile(rb"(?:Running|answering|stalling|upstream) on (http://127\.0\.0\.1:\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _more_files() -> None:
    # Thousands of open streams need thousands of sockets in every process.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Running:
    process: trio.Process
    url: str

    @property
    def pids(self) -> list[int]:
        """The process and its children (the workers, with WORKERS > 1)."""
        return [self.process.pid, *children(self.process.pid)]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@asynccontextmanager
async def started(
    argv: list[str],
    env: Mapping[str, str],
    log: Path,
    ready: re.Pattern[bytes] = RUNNING_ON,
    startup_s: float = 60,
) -> AsyncIterator[Running]:
    """Start `argv` with its output in `log`; wait for the URL it prints; stop it after.

    The output goes straight to a file, so reading it costs the benchmark nothing.
    """
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_more_files,
        )
        try:
            with trio.fail_after(startup_s):
                while not (match := ready.search(await trio.Path(log).read_bytes())):
                    if process.poll() is not None:
                        output = await trio.Path(log).read_text()
                        raise RuntimeError(f"{argv} exited:\n{output}")
                    await trio.sleep(0.05)
            yield Running(process, match.group(1).decode())
        finally:
            if process.returncode is None:
                process.terminate()
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def fake_upstream(models: Mapping[str, Mapping[str, object]], log: Path) -> list[str]:
    argv = [sys.executable, "-m", "tests.fake_upstream", "--port", "0"]
    for name, behaviour in models.items():
        argv += ["--model", f"{name}={json.dumps(behaviour)}"]
    return argv


def ensemble_file(
    path: Path,
    agents: int,
    agent_model: str,
    summary_model: str | None,
    *,
    upstream: str | None = None,
    max_connections: int | None = None,
    strategy: str = "summarize",
    deliberation: Mapping[str, int] | None = None,
) -> Path:
    """An ensemble of `agents` agents and a summarizer (none if `summary_model` is None, as
    for a vote). With `upstream`, every member uses a provider at that URL with a pool of
    `max_connections` (else LLM_BASE_URL's). A `strategy` other than the default comes
    with its `deliberation` options."""
    provider = 'provider = "upstream"\n' if upstream else ""
    parts = []
    if strategy != "summarize" or deliberation:
        options = "".join(f"{name} = {value}\n" for name, value in (deliberation or {}).items())
        parts.append(f'strategy = "{strategy}"\n[deliberation]\n{options}')
    parts += [
        f'[[agents]]\nname = "agent-{i}"\nmodel = "{agent_model}"\nretries = 0\n'
        f'timeout_s = 3600\nsystem_prompt = "You are agent {i}."\n{provider}'
        for i in range(agents)
    ]
    if summary_model is not None:
        parts.append(
            f'[summarizer]\nname = "combine"\nmodel = "{summary_model}"\nretries = 0\n'
            f'system_prompt = "Combine."\n{provider}'
        )
    if upstream:
        parts.append(
            f'[providers.upstream]\nbase_url = "{upstream}/v1"\n'
            f"max_connections = {max_connections or 1000}\n"
        )
    path.write_text("\n".join(parts))
    return path


_STORES = itertools.count(1)


def service_env(upstream_url: str, ensemble: Path, **extra: str) -> dict[str, str]:
    """The service as users run it: its defaults, the embedded SQLite store among them (a
    fresh database file per start, beside the ensemble file), unless `extra` says else."""
    return {
        "USE_LLM_MOCK": "false",
        "LLM_BASE_URL": f"{upstream_url}/v1",
        "LLM_KEY": "bench",
        "ENSEMBLE_FILE": str(ensemble),
        "HTTP_ADDR": "127.0.0.1:0",
        "REQUEST_TIMEOUT_S": "3600",
        "ENSEMBLE_RELOAD_S": "0",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{ensemble.parent / f'store-{next(_STORES)}.db'}",
        **extra,
    }
