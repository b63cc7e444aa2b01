"""The cluster of `make cluster` in a test: nginx with deploy/nginx.conf in front of two
`python -m service` replicas, on a PostgreSQL schema and the test process's Redis database
of their own, with the mock's timings each case asks for. A case that restarts PostgreSQL
or Redis gives the URL of a server of its own (tests/cluster/own_servers.py) instead.

    async def test_a_case(cluster_of: ClusterOf) -> None:
        async with cluster_of(MOCK_TOKEN_MS="50") as (cluster, database_url):
            cluster.url, cluster.replicas[0].kill(), cluster.requests()
        async with cluster_of(redis_url=own.url) as (cluster, database_url): ...

nginx is installed (Debian's package, scripts/install_nginx.sh) when it is missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path

import pytest

from scripts.cluster import Cluster, running_cluster
from scripts.cluster.processes import ROOT, ClusterError, find_nginx, replica_env
from tests.databases import (
    REDIS_URL,
    _unavailable,
    forget_redis_prefix,
    postgres_schema,
    redis_reachable,
)
from tests.integration.test_main_process import service_env
from tests.log_watch import watch

ClusterOf = Callable[..., AbstractAsyncContextManager[tuple[Cluster, str]]]


@pytest.fixture(scope="session")
def nginx() -> str:
    """nginx's path, installed first when there is none (as `make nginx` does)."""
    try:
        return find_nginx()
    except ClusterError:
        installed = subprocess.run(
            [ROOT / "scripts" / "install_nginx.sh"], capture_output=True, text=True, check=False
        )
        if installed.returncode != 0:
            _unavailable(f"nginx is not installed and could not be: {installed.stderr[-500:]}")
        return find_nginx()


@pytest.fixture
def cluster_of(tmp_path: Path, nginx: str) -> ClusterOf:
    @asynccontextmanager
    async def started(
        *, database_url: str | None = None, redis_url: str | None = None, **env: str
    ) -> AsyncIterator[tuple[Cluster, str]]:
        if redis_url is None:
            await redis_reachable()
        with ExitStack() as stack:
            if database_url is None:
                database_url = stack.enter_context(postgres_schema())
            environment = replica_env(
                service_env(**env),
                database_url=database_url,
                redis_url=redis_url or REDIS_URL,
                limits_file=None,
            )
            run_dir = tmp_path / "cluster"
            try:
                async with running_cluster(run_dir, environment, cwd=tmp_path) as cluster:
                    yield cluster, database_url
            finally:
                if redis_url is None:
                    await forget_redis_prefix("fanout:")
                for name, log in Cluster.logs_in(run_dir).items():
                    watch.scan(log, where=f"{name} of the cluster in {tmp_path.name}")

    return started


# The fault suite's table: each case here writes its row too (`make test-faults` prints it).
from tests.faults.conftest import pytest_runtest_makereport, report  # noqa: E402, F401
