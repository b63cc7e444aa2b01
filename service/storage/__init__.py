"""Conversations, messages, their agents' answers and event logs: SQLAlchemy Core on SQLite
or PostgreSQL, every query scoped to one owner.

    async with open_store(settings) as store:     # None when DATABASE_URL=none
        ...
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from sqlalchemy.exc import SQLAlchemyError

from ..settings import Settings
from ..urls import redact_url
from .database import Database, DatabaseUrlError
from .housekeeping import heartbeat_expiry, keep_house
from .migrate import migrate
from .records import (
    FINISHED,
    AgentAnswer,
    ConversationSummary,
    ExistingMessage,
    HistoryTurn,
    MessageDetail,
    MessageEnd,
    MessageStart,
    NewMessage,
    Status,
    StoredEvent,
    UnknownMessage,
    UnknownParent,
)
from .store import StorageUnavailable, Store

log = logging.getLogger(__name__)


class StorageStartError(Exception):
    """The database cannot be used; the message is one line, naming DATABASE_URL."""


def prepare_database(url: str) -> Database:
    """Connect and migrate (blocking). Raises StorageStartError in one line."""
    shown = redact_url(url)
    try:
        database = Database.connect(url)
    except DatabaseUrlError as exc:
        raise StorageStartError(f"DATABASE_URL={shown!r}: {exc}") from exc
    try:
        migrate(database.engine)
    except SQLAlchemyError as exc:
        database.close()
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        # The driver may quote the URL back: never a password in the line.
        reason = reason.replace(url, shown)
        # `from None`: the driver's own exception is not shown, whatever it holds.
        raise StorageStartError(
            f"DATABASE_URL={shown!r}: cannot use the database: {reason}"
        ) from None
    return database


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store | None]:
    if not settings.storage_enabled:
        yield None
        return
    url = settings.database_url.get_secret_value()
    database = await trio.to_thread.run_sync(prepare_database, url)
    store = Store(database, instance=settings.instance_name)
    try:
        interrupted = await store.mark_interrupted(
            expiry=heartbeat_expiry(settings.heartbeat_s), starting=True
        )
        if interrupted:
            log.warning("%d message(s) left running by a stopped process: interrupted", interrupted)
        stopped = await store.mark_evaluations_interrupted(
            expiry=heartbeat_expiry(settings.heartbeat_s), starting=True
        )
        if stopped:
            log.warning("%d evaluation(s) left running by a stopped process: interrupted", stopped)
        await store.heartbeat()
        async with trio.open_nursery() as writer_nursery:
            writer_nursery.start_soon(store.write_phases)
            yield store
            writer_nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            # Phases kept since the database was away: a last chance, else lost (logged).
            await store.write_unwritten()
            try:
                # A clean stop: no one needs to wait for this instance's heartbeat to expire.
                await store.forget_instance()
            except StorageUnavailable:
                log.warning("could not remove this instance's heartbeat")
        await trio.to_thread.run_sync(database.close)


__all__ = [
    "FINISHED",
    "AgentAnswer",
    "ConversationSummary",
    "Database",
    "ExistingMessage",
    "HistoryTurn",
    "MessageDetail",
    "MessageEnd",
    "MessageStart",
    "NewMessage",
    "Status",
    "StorageStartError",
    "StorageUnavailable",
    "Store",
    "StoredEvent",
    "UnknownMessage",
    "UnknownParent",
    "keep_house",
    "open_store",
    "prepare_database",
]
