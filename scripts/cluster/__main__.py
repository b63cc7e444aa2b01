"""`python -m scripts.cluster` (`make cluster`): docker-compose.yml's shape on this machine,
in the foreground until Ctrl+C.

    make cluster                       # nginx on CLUSTER_PORT (8080), two replicas
    CLUSTER_PORT=9000 make cluster

The replicas keep their conversations in CLUSTER_DATABASE_URL (a database of its own on the
machine's PostgreSQL, made when missing) and share limits and live runs on
CLUSTER_REDIS_URL (a Redis database of its own). Anything else set in the environment or
in .env reaches the replicas, as compose's `env_file: .env` does.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from service.urls import redact_url

from .processes import (
    LIMITS_FILE,
    NGINX_CONF,
    ROOT,
    Cluster,
    ClusterError,
    replica_env,
    running_cluster,
)

PORT = 8080
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fanout_cluster"
# Tests use the Redis databases from 1 up (one per test process); the cluster the last one.
REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """What `make cluster` reads from the environment (docs/deploy.md has the table).

    ClusterSettings.from_environ({"CLUSTER_PORT": "9000"}).port   # 9000; unset or empty: 8080
    """

    port: int
    database_url: str
    redis_url: str
    limits_file: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ClusterSettings:
        return cls(
            port=_port(environ.get("CLUSTER_PORT") or str(PORT)),
            database_url=environ.get("CLUSTER_DATABASE_URL") or DATABASE_URL,
            redis_url=environ.get("CLUSTER_REDIS_URL") or REDIS_URL,
            limits_file=Path(environ.get("LIMITS_FILE") or LIMITS_FILE),
        )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0  # refused below, as 0 is: nginx would be on a port nobody asked for
    if not 1 <= port <= 65535:
        raise ClusterError(f"CLUSTER_PORT must be a port number, 1 to 65535, not {text!r}")
    return port


def ensure_database(url: str) -> None:
    """Make the database `url` names when its server does not have it yet."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ClusterError(f"CLUSTER_DATABASE_URL names no database: {redact_url(url)}")
    server = create_engine(
        target.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        with server.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if found is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        raise ClusterError(f"PostgreSQL is not reachable at {redact_url(url)}: {exc.orig}") from exc
    finally:
        server.dispose()


def describe(cluster: Cluster, database_url: str, redis_url: str) -> str:
    nginx = cluster.nginx
    assert nginx.process is not None
    lines = [
        f"cluster on {cluster.url}  ({nginx.version()}, pid {nginx.process.pid})",
        f"  nginx      config {nginx.config_path} (from {NGINX_CONF.relative_to(ROOT)})",
        f"             log {nginx.log_path}, access log {nginx.access_log}",
    ]
    for replica in cluster.replicas:
        lines.append(f"  {replica.name}  {replica.url}  pid {replica.pid}  log {replica.log_path}")
    lines += [
        f"  PostgreSQL {redact_url(database_url)}",
        f"  Redis      {redact_url(redis_url)}",
        "Ctrl+C stops them: the replicas drain their streams, then nginx stops.",
    ]
    return "\n".join(lines)


async def run(settings: ClusterSettings) -> int:
    env = replica_env(
        os.environ,
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        limits_file=settings.limits_file,
    )
    run_dir = Path(tempfile.mkdtemp(prefix="fanout-cluster-"))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with running_cluster(run_dir, env, port=settings.port) as cluster:
            print(describe(cluster, settings.database_url, settings.redis_url), flush=True)
            exited: list[str] = []
            async with trio.open_nursery() as watching:

                async def until_exit(name: str, process: trio.Process) -> None:
                    await process.wait()
                    exited.append(f"{name} exited with {process.returncode}")
                    watching.cancel_scope.cancel()

                async def until_signal() -> None:
                    async for signum in signals:
                        print(f"\n{signal.Signals(signum).name}: stopping", flush=True)
                        watching.cancel_scope.cancel()
                        return

                watching.start_soon(until_signal)
                assert cluster.nginx.process is not None
                watching.start_soon(until_exit, "nginx", cluster.nginx.process)
                for replica in cluster.replicas:
                    assert replica.process is not None
                    watching.start_soon(until_exit, replica.name, replica.process)
    if exited:
        print(f"{exited[0]}; stopped the others. Logs in {run_dir}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    try:
        settings = ClusterSettings.from_environ(os.environ)
        ensure_database(settings.database_url)
        return trio.run(run, settings)
    except (ClusterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
