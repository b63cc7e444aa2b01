"""Real databases for tests: an SQLite file in the test's directory, or a schema of its own
in the machine's PostgreSQL (dropped afterwards).

PostgreSQL is found at TEST_POSTGRES_URL (default: the local server, user postgres,
database test). When it cannot be reached its tests skip with the reason, unless
REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema; yields a DATABASE_URL whose connections use it."""
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"t_{secrets.token_hex(6)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'fanout.db'}"
    else:
        with postgres_schema() as url:
            yield url


def worker_number() -> int:
    """Which of the parallel test processes this is (pytest-xdist's gw0, gw1, ...); 0 alone."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else 0


# A Redis database of each test process's own (1, 2, ...; 0 is left to whoever else uses
# the server), so tests running at once never meet in Redis.
REDIS_DATABASE = 1 + worker_number()
REDIS_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DATABASE}")


async def redis_reachable() -> None:
    """Skip (or, with REQUIRE_SERVICES=1, fail) when the machine's Redis does not answer."""
    import coredis

    try:
        client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
        async with client:
            await client.ping()
    except (OSError, coredis.exceptions.RedisError) as exc:
        _unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")


async def forget_redis_prefix(prefix: str) -> None:
    """Delete every key a test made under `prefix`."""
    import coredis

    client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)
