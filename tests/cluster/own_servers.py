"""A Redis and a PostgreSQL of a case's own, on free ports, that the case may restart: the
machine's servers are shared with every other test running, so they are never stopped.

    async with own_redis(tmp_path) as redis:
        redis.url                                  # redis://127.0.0.1:PORT/0
        down_at, up_at = await redis.restart(down_s=2)   # stopped, then started again, empty

    async with own_postgres() as postgres:
        postgres.url                               # postgresql+psycopg://postgres@...:PORT/postgres
        await postgres.restart(down_s=2)           # a fast shutdown, then started again

Redis runs as the machine's does (`--save "" --appendonly no`: nothing on disk, so a restart
forgets everything). PostgreSQL is a cluster made by Debian's `initdb` in a directory of its
own, with trust authentication on 127.0.0.1; as root, it runs as the `postgres` user (the
server refuses to run as root). A fast shutdown is what `pg_ctl restart` and systemd's
restart do: every session is ended at once, and the server stops cleanly. Either server's
output goes to a log file next to its data.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from scripts.cluster.processes import free_port
from tests.databases import _unavailable

START_S = 30.0
STOP_S = 15.0


async def _stop(process: trio.Process, signum: int) -> None:
    """Stop it with `signum`, then kill -9 if it has not exited after STOP_S."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signum)
        with trio.move_on_after(STOP_S):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _until(ready: Any, process: trio.Process, log: Path, what: str) -> None:
    """Until `await ready()` is true; fails with the log's end if the process exits first."""
    with trio.move_on_after(START_S):
        while process.returncode is None:
            if await ready():
                return
            await trio.sleep(0.05)
    written = trio.Path(log)
    text = await written.read_text(errors="replace") if await written.exists() else ""
    tail = "\n".join(text.splitlines()[-20:])
    raise RuntimeError(f"{what} did not start:\n{tail}")


class _Restartable:
    """A server of a case's own that can be stopped and started again on the same port
    (Redis empty; PostgreSQL with its data)."""

    restarts: int

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def restart(self, *, down_s: float) -> tuple[float, float]:
        """Stop it, wait `down_s`, start it again; when it went down and when it answered
        again (trio's clock)."""
        await self.stop()
        down_at = trio.current_time()
        await trio.sleep(down_s)
        await self.start()
        self.restarts += 1
        return down_at, trio.current_time()


@dataclass(eq=False)
class OwnRedis(_Restartable):
    directory: Path
    port: int = field(default_factory=free_port)
    process: trio.Process | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        await _until(self._answers, self.process, self.log_path, "redis-server")

    async def _answers(self) -> bool:
        try:
            async with await trio.open_tcp_stream("127.0.0.1", self.port) as stream:
                await stream.send_all(b"PING\r\n")
                return (await stream.receive_some(64)).startswith(b"+PONG")
        except OSError:
            return False

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process, signal.SIGTERM)


@asynccontextmanager
async def own_redis(directory: Path) -> AsyncIterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed")
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    redis = OwnRedis(directory)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


def _postgres_bin() -> Path | None:
    """Debian's newest PostgreSQL binaries (/usr/lib/postgresql/VERSION/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass(eq=False)
class OwnPostgres(_Restartable):
    directory: Path
    binaries: Path
    # As root, the user the server runs as (uid, gid); None: this process's own.
    run_as: tuple[int, int] | None
    port: int = field(default_factory=free_port)
    process: trio.Process | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def _as_user(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        uid, gid = self.run_as
        return {"user": uid, "group": gid, "extra_groups": []}

    async def init(self) -> None:
        with self.log_path.open("ab") as log:
            await trio.run_process(
                [
                    str(self.binaries / "initdb"),
                    *("-D", str(self.directory / "data"), "-U", "postgres", "-A", "trust"),
                    *("-E", "UTF8", "--locale=C", "--no-sync"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_user(),
            )

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [
                    str(self.binaries / "postgres"),
                    *("-D", str(self.directory / "data"), "-p", str(self.port)),
                    *("-k", str(self.directory), "-c", "listen_addresses=127.0.0.1"),
                    # A test's data: durability is not what is tested, speed on a busy machine is.
                    *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                    *("-c", "full_page_writes=off", "-c", "max_connections=200"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_user(),
            )
        await _until(self._answers, self.process, self.log_path, "PostgreSQL")

    async def _answers(self) -> bool:
        checked = await trio.run_process(
            [str(self.binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return checked.returncode == 0

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process, signal.SIGINT)  # the fast shutdown: every session ends


@asynccontextmanager
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    binaries = _postgres_bin()
    if binaries is None:
        _unavailable("PostgreSQL's server binaries are not installed (/usr/lib/postgresql)")
        raise AssertionError  # not reached: _unavailable skips or fails
    run_as = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root, and there is no `postgres` user to run PostgreSQL as")
            raise AssertionError from None
        run_as = (user.pw_uid, user.pw_gid)
    # Not under pytest's tmp_path: the server's user must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="fanout-postgres-"))
    try:
        if run_as is not None:
            os.chown(directory, *run_as)
        postgres = OwnPostgres(directory, binaries, run_as)
        await postgres.init()
        await postgres.start()
        try:
            yield postgres
        finally:
            await postgres.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
