"""The database: one sync SQLAlchemy engine, used from worker threads, never from the loop.

A thread cannot be cancelled, so every call is bounded where it runs: PostgreSQL's
`statement_timeout`, SQLite's `busy_timeout`. Calls wait for a thread under a limiter sized
to the connection pool (one for SQLite, which writes one transaction at a time), so a
burst queues in trio (cancellable) rather than in the pool or on the file's lock.

    database = Database.connect("sqlite:///data/fanout.db")
    rows = await database.run(lambda connection: connection.execute(query).all())
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

T = TypeVar("T")

POOL_SIZE = 10
# Longest a statement may run (PostgreSQL) or wait for SQLite's write lock.
STATEMENT_TIMEOUT_MS = 5000
STATEMENT_TIMEOUT = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"


class DatabaseUrlError(ValueError):
    """DATABASE_URL names no database this service can use."""


def _sqlite_setup(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={STATEMENT_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_database_engine(url: str) -> Engine:
    """The engine for `url`. Its errors never show a statement's parameters
    (`hide_parameters`): they hold what clients sent, and errors reach the log."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError("expected sqlite:///PATH or postgresql+psycopg://...") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            hide_parameters=True,
            pool_size=POOL_SIZE,
            max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": STATEMENT_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_setup)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise DatabaseUrlError("use the psycopg driver: postgresql+psycopg://...")
        # Keep any `options` the URL has (a search_path, say) beside the statement timeout.
        given = parsed.query.get("options", "")
        options = " ".join([*(given if isinstance(given, tuple) else [given]), STATEMENT_TIMEOUT])
        return create_engine(
            parsed.difference_update_query(["options"]),
            hide_parameters=True,
            pool_size=POOL_SIZE,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"options": options.strip(), "connect_timeout": 5},
        )
    raise DatabaseUrlError(f"unsupported database {backend!r}: use sqlite or postgresql+psycopg")


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite takes one writer at a time, and one that finds the file locked sleeps in
        # steps of up to 100 ms before it tries again: taking turns here is far faster.
        self._limiter = trio.CapacityLimiter(1 if self.dialect == "sqlite" else POOL_SIZE)

    @classmethod
    def connect(cls, url: str) -> Database:
        return cls(create_database_engine(url))

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction, in a worker thread; commit if it returns."""

        def in_thread() -> T:
            with self.engine.begin() as connection:
                return work(connection)

        return await trio.to_thread.run_sync(in_thread, limiter=self._limiter)

    def close(self) -> None:
        self.engine.dispose()
