"""The cluster's processes: the replicas (`python -m service`, each on a port of its own)
and nginx in front of them, started, stopped and restarted one at a time.

    async with running_cluster(run_dir, env, cwd=run_dir) as cluster:
        cluster.url                              # nginx
        cluster.replicas[0].kill()               # kill -9
        await cluster.replicas[0].wait()
        await cluster.replicas[0].start()        # again, on the same port
        cluster.requests()                       # nginx's access log, one dict a request

Every process's output goes to a file in the run directory (`replica-1.log`, `nginx.log`),
so reading it never slows them down. The processes start in sessions of their own: a
Ctrl+C in the terminal reaches the script, which stops them in order (the replicas drain
first, while nginx still passes their streams, then nginx).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from .nginx_config import TEMPORARY_FILES, render_nginx_config

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
LIMITS_FILE = ROOT / "deploy" / "limits.toml"
# Where nginx is, on PATH or where Debian puts it (/usr/sbin is not on every user's PATH).
NGINX_PLACES = ("/usr/sbin/nginx",)
# Longer than SHUTDOWN_GRACE_S's default (10 s) and its flush, as compose's stop_grace_period.
STOP_GRACE_S = 20.0
START_S = 30.0


class ClusterError(RuntimeError):
    """A process of the cluster would not start; the message ends with its log."""


def find_nginx() -> str:
    """NGINX, or nginx on PATH, or Debian's /usr/sbin/nginx; `make nginx` installs it."""
    named = os.environ.get("NGINX") or shutil.which("nginx")
    if named:
        return named
    for place in NGINX_PLACES:
        if os.access(place, os.X_OK):
            return place
    raise ClusterError("no nginx: run `make nginx` (Debian's package), or set NGINX")


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice), for a process to bind next."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(eq=False)
class Replica:
    """One `python -m service` on 127.0.0.1:`port`; started again on the same port."""

    name: str
    port: int
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: trio.Process | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start it and return once it listens (it has opened its database and Redis)."""
        if self.running:
            raise ClusterError(f"{self.name} is running already")
        listening = f"Running on {self.url}".encode()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "service"],
                cwd=self.cwd,
                env={**self.env, "HTTP_ADDR": self.address, "INSTANCE_ID": self.name},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        with trio.move_on_after(START_S):
            while listening not in (await trio.Path(self.log_path).read_bytes())[offset:]:
                if self.process.poll() is not None:
                    break
                await trio.sleep(0.05)
            else:
                return
        self.kill()
        await self.wait()
        raise ClusterError(f"{self.name} did not start:\n{_tail(self.log_path)}")

    def kill(self) -> None:
        """kill -9."""
        if self.running:
            assert self.process is not None
            self.process.kill()

    def terminate(self) -> None:
        """SIGTERM: it drains (readiness off, no new streams) and exits after the grace."""
        if self.running:
            assert self.process is not None
            self.process.terminate()

    async def wait(self) -> int | None:
        return None if self.process is None else await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, and kill -9 if it has not exited after STOP_GRACE_S."""
        self.terminate()
        with trio.move_on_after(STOP_GRACE_S):
            await self.wait()
        self.kill()
        with trio.CancelScope(shield=True):
            await self.wait()


@dataclass(eq=False)
class Nginx:
    """nginx with deploy/nginx.conf, rendered for the replicas' local addresses."""

    port: int
    run_dir: Path
    upstreams: list[str]
    binary: str = field(default_factory=find_nginx)
    process: trio.Process | None = None

    @property
    def config_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "nginx.log"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, Any]]:
        """Its access log so far: one dict per request answered, in the order they ended
        (`status`, `method`, `uri`, `upstream`: the replicas tried, `upstream_status`)."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines()]

    def version(self) -> str:
        shown = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        return shown.stderr.strip().removeprefix("nginx version: ")

    async def start(self) -> None:
        for kind in TEMPORARY_FILES:
            (self.run_dir / "temp" / kind).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_nginx_config(
                NGINX_CONF.read_text(),
                upstreams=self.upstreams,
                listen=f"127.0.0.1:{self.port}",
                run_dir=self.run_dir,
            )
        )
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [self.binary, "-p", str(self.run_dir), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        async with httpx.AsyncClient(timeout=2) as client:
            with trio.move_on_after(START_S):
                while self.process.poll() is None:
                    try:
                        await client.get(f"{self.url}/healthz")
                        return
                    except httpx.TransportError:
                        await trio.sleep(0.05)
        await self.stop()
        raise ClusterError(f"nginx did not start:\n{_tail(self.log_path)}")

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.terminate()  # nginx's fast shutdown
        with trio.move_on_after(5):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
        with trio.CancelScope(shield=True):
            await self.process.wait()


@dataclass(eq=False)
class Cluster:
    nginx: Nginx
    replicas: list[Replica]
    run_dir: Path

    @property
    def url(self) -> str:
        return self.nginx.url

    def replica_at(self, address: str) -> Replica:
        """The replica listening on `address` (as nginx's access log names it)."""
        return next(replica for replica in self.replicas if replica.address == address)

    def requests(self) -> list[dict[str, Any]]:
        """nginx's access log so far (Nginx.requests)."""
        return self.nginx.requests()

    @staticmethod
    def logs_in(run_dir: Path) -> dict[str, str]:
        """Every process's whole output (nginx's, each replica's), by name."""
        return {path.stem: path.read_text(errors="replace") for path in run_dir.glob("*.log")}


def replica_env(
    base: Mapping[str, str], *, database_url: str, redis_url: str, limits_file: Path | None
) -> dict[str, str]:
    """What compose's `fanout` service sets, for this machine: the database and Redis, the
    limits file, and nginx's address (127.0.0.1) as the proxy whose X-Forwarded-For counts."""
    env = {
        **base,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "PYTHONUNBUFFERED": "1",
    }
    if limits_file is not None:
        env["LIMITS_FILE"] = str(limits_file)
    return env


@asynccontextmanager
async def running_cluster(
    run_dir: Path,
    env: Mapping[str, str],
    *,
    replicas: int = 2,
    port: int = 0,
    cwd: Path = ROOT,
) -> AsyncIterator[Cluster]:
    """`replicas` replicas with `env` (see replica_env) and nginx on `port` (0: any free one),
    all stopped when the block ends: the replicas drain first, then nginx stops."""
    await trio.Path(run_dir).mkdir(parents=True, exist_ok=True)
    started = [
        Replica(
            name=f"replica-{number}",
            port=free_port(),
            env=dict(env),
            cwd=cwd,
            log_path=run_dir / f"replica-{number}.log",
        )
        for number in range(1, replicas + 1)
    ]
    nginx = Nginx(
        port=port or free_port(),
        run_dir=run_dir,
        upstreams=[replica.address for replica in started],
    )
    try:
        async with trio.open_nursery() as starting:
            for replica in started:
                starting.start_soon(replica.start)
        await nginx.start()
        yield Cluster(nginx=nginx, replicas=started, run_dir=run_dir)
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as stopping:
                for replica in started:
                    stopping.start_soon(replica.stop)
            await nginx.stop()
