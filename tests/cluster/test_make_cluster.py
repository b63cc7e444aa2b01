"""`make cluster` itself (`python -m scripts.cluster`), run as a user runs it, on a free
CLUSTER_PORT, a PostgreSQL schema and the test process's Redis database: its banner names
live processes and URLs that answer; Ctrl+C stops every one of them and exits 0; a replica
that dies stops the others and exits 1. Its default port, 8080, is only parsed here: a test
never binds it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from scripts.cluster import Cluster
from scripts.cluster.__main__ import ClusterSettings
from scripts.cluster.processes import ROOT, STOP_GRACE_S, ClusterError, free_port
from tests.databases import REDIS_URL, forget_redis_prefix, postgres_schema, redis_reachable
from tests.integration.test_main_process import service_env
from tests.log_watch import watch

BANNER_END = b"Ctrl+C stops them"
NGINX_LINE = re.compile(r"^cluster on (?P<url>http://\S+) .*pid (?P<pid>\d+)\)$", re.M)
REPLICA_LINE = re.compile(r"^ +(?P<name>replica-\d+) +(?P<url>http://\S+) +pid (?P<pid>\d+) ", re.M)
START_S = 60.0  # two replicas and nginx, on a machine busy with other tests


@dataclass
class Started:
    """`python -m scripts.cluster` once its banner is out: the PIDs and URLs it printed."""

    process: trio.Process
    url: str
    pids: dict[str, int]  # nginx, replica-1, replica-2
    replica_urls: dict[str, str]
    stderr_path: Path

    async def rest_of_stdout(self) -> str:
        assert self.process.stdout is not None
        rest = b""
        while chunk := await self.process.stdout.receive_some():
            rest += chunk
        return rest.decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@asynccontextmanager
async def make_cluster(tmp_path: Path, nginx: str) -> AsyncIterator[Started]:
    await redis_reachable()
    stderr_path = tmp_path / "stderr"
    with postgres_schema() as database_url, stderr_path.open("wb") as stderr:
        env = service_env(
            CLUSTER_PORT=str(free_port()),
            CLUSTER_DATABASE_URL=database_url,
            CLUSTER_REDIS_URL=REDIS_URL,
            NGINX=nginx,
            TMPDIR=str(tmp_path),  # its run directory (mkdtemp), gone with the test's
        )
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "scripts.cluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        assert process.stdout is not None
        banner = b""
        pids: dict[str, int] = {}
        try:
            with trio.fail_after(START_S):
                while BANNER_END not in banner:
                    chunk = await process.stdout.receive_some()
                    assert chunk, f"it exited before its banner:\n{stderr_path.read_text()}"
                    banner += chunk
            text = banner.decode()
            nginx_line = NGINX_LINE.search(text)
            assert nginx_line is not None, text
            replicas = list(REPLICA_LINE.finditer(text))
            pids = {"nginx": int(nginx_line["pid"])}
            pids |= {line["name"]: int(line["pid"]) for line in replicas}
            assert nginx_line["url"] == f"http://127.0.0.1:{env['CLUSTER_PORT']}", text
            assert len(replicas) == 2, text
            yield Started(
                process,
                nginx_line["url"],
                pids,
                {line["name"]: line["url"] for line in replicas},
                stderr_path,
            )
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()  # as Ctrl+C: it stops what it started
                    with trio.move_on_after(STOP_GRACE_S + 10):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                # Each was started in a session of its own: its group is its pid (nginx's
                # workers are in the master's).
                for pid in pids.values():
                    with suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                await process.wait()
                await forget_redis_prefix("fanout:")
                for run_dir in await trio.Path(tmp_path).glob("fanout-cluster-*"):
                    for name, log in Cluster.logs_in(Path(run_dir)).items():
                        watch.scan(log, where=f"{name} of make cluster in {tmp_path.name}")


async def test_ctrl_c_stops_every_process_it_printed_and_exits_0(
    tmp_path: Path, nginx: str
) -> None:
    async with make_cluster(tmp_path, nginx) as started:
        assert all(alive(pid) for pid in started.pids.values()), started.pids
        async with httpx.AsyncClient(timeout=10) as client:
            for url in [started.url, *started.replica_urls.values()]:
                assert (await client.get(f"{url}/readyz")).status_code == 200, url
        started.process.send_signal(signal.SIGINT)
        with trio.fail_after(STOP_GRACE_S + 10):
            code = await started.process.wait()
        stopping = await started.rest_of_stdout()
        assert code == 0, started.stderr_path.read_text()
        assert "SIGINT: stopping" in stopping
        assert not [name for name, pid in started.pids.items() if alive(pid)]


async def test_a_replica_that_dies_stops_the_others_and_exits_1(tmp_path: Path, nginx: str) -> None:
    async with make_cluster(tmp_path, nginx) as started:
        os.kill(started.pids["replica-1"], signal.SIGKILL)
        with trio.fail_after(STOP_GRACE_S + 10):
            code = await started.process.wait()
        assert code == 1
        assert "replica-1 exited with -9" in started.stderr_path.read_text()
        assert not [name for name, pid in started.pids.items() if alive(pid)]


@pytest.mark.parametrize(
    ("environ", "port"),
    [({}, 8080), ({"CLUSTER_PORT": ""}, 8080), ({"CLUSTER_PORT": "9000"}, 9000)],
)
def test_nginx_listens_on_8080_unless_cluster_port_says_otherwise(
    environ: dict[str, str], port: int
) -> None:
    assert ClusterSettings.from_environ(environ).port == port


@pytest.mark.parametrize("text", ["http", "80.5", "0", "-1", "65536"])
def test_a_cluster_port_that_is_no_port_is_refused(text: str) -> None:
    with pytest.raises(ClusterError, match="CLUSTER_PORT"):
        ClusterSettings.from_environ({"CLUSTER_PORT": text})
