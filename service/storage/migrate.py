"""Bring the database's schema up to date: at every start, and by `python -m service migrate`.

Several instances may start at once: on PostgreSQL the migration runs under an advisory
lock, so one migrates and the others find the work done. SQLite serialises writers itself.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant of our own: the key of the advisory lock the migrating instance holds.
ADVISORY_LOCK_KEY = 0x66616E6F7574  # "fanout"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """SQLite has no advisory lock: processes sharing the file take a lock file beside it."""
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite changes a table's constraints by copying it and dropping the old one, and with
    foreign keys on, that drop would delete every row that refers to it (ON DELETE CASCADE).
    Off while migrating (the pragma only takes outside a transaction), checked after."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left {len(broken)} row(s) without their parent")
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade_to(engine: Engine, revision: str) -> None:
    """Upgrade to `revision`, not further (tests of a migration start from the one before)."""
    with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
        command.upgrade(_alembic_config(connection), revision)
        connection.commit()


def migrate(engine: Engine) -> str | None:
    """Upgrade to the newest revision; return it. A database already there is left alone."""
    if engine.dialect.name == "sqlite":
        with _sqlite_file_lock(engine):
            return _migrate(engine)
    return _migrate(engine)


def _migrate(engine: Engine) -> str | None:
    with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        try:
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(_alembic_config(connection), "head")
            connection.commit()
            after = MigrationContext.configure(connection).get_current_revision()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()
    if before != after:
        log.info("database migrated from %s to %s", before or "empty", after)
    return after
