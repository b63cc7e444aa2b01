"""The store the service talks to: every query of queries.py, run off the event loop.

Reads fail loudly (the caller answers 503); writes made while a stream runs are retried
within a bound and then given up, logged and counted (`fanout_storage_errors_total`), so a
failing database never breaks a stream. A run's phase given up so is kept, and written
once the database answers again (`write_unwritten`, each heartbeat): a message whose end
was lost that way is stored whole then, instead of staying `running`.

    store = Store(database, instance="host:8080")
    begun = await store.begin_message(principal, MessageStart(message_id="m-1", ...))
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import trio
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..principal import Principal
from ..telemetry.metrics import METRICS
from . import queries
from .database import Database
from .evaluations import delete_expired_evaluations, mark_evaluations_interrupted
from .records import (
    AgentAnswer,
    ConversationSummary,
    ExistingMessage,
    MessageDetail,
    MessageEnd,
    MessageStart,
    NewMessage,
    Owner,
    Phase,
    Status,
    StoredEnd,
    StoredEvent,
    UsageLine,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# A write during a stream: this many tries, backing off, all within WRITE_BUDGET_S.
WRITE_ATTEMPTS = 3
WRITE_BACKOFF_S = 0.2
WRITE_BUDGET_S = 3.0
# Phases given up while the database was away, kept to be written once it is back; past
# this many, the oldest is lost for good (it was logged and counted when it failed).
UNWRITTEN_KEPT = 2000


@dataclass(eq=False)
class _Queued:
    phase: Phase
    taken: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False


class NotYours(Exception):
    """A caller named another user's rows without being an admin of their tenant."""


def owner_of(principal: Principal, user: str | None = None) -> Owner:
    """The rows `principal` reads: its own, or (an admin) those of `user` in its tenant."""
    if user is None or user == principal.user:
        return Owner(tenant=principal.tenant, user=principal.user)
    if not principal.is_admin:
        raise NotYours(user)
    return Owner(tenant=principal.tenant, user=user)


def _writer_of(phases: list[Phase]) -> Callable[[Connection], None]:
    return lambda connection: queries.record_phases(connection, phases)


class StorageUnavailable(Exception):
    """The database did not answer; the cause says why (for the log only)."""


class Store:
    def __init__(self, database: Database, *, instance: str) -> None:
        self.database = database
        self.instance = instance
        self._queue: list[_Queued] = []
        self._queued = trio.Event()
        self._group_writing = False
        self._unwritten: deque[Phase] = deque(maxlen=UNWRITTEN_KEPT)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work`, which only reads, once; StorageUnavailable if the database did not
        answer."""
        return await self._once("read", work)

    async def write_once(self, work: Callable[[Connection], T]) -> T:
        """Run `work`, which writes, once, for a caller that answers for a failure itself
        (a 503, the message run unrecorded); StorageUnavailable if the database did not
        answer (counted as `write_once`: `write` counts the writes lost after their
        retries). `write` is for the writes retried in the background."""
        return await self._once("write_once", work)

    async def _once(self, operation: str, work: Callable[[Connection], T]) -> T:
        try:
            return await self.database.run(work)
        except SQLAlchemyError as exc:
            METRICS.storage_errors.labels(operation=operation).inc()
            raise StorageUnavailable() from exc

    async def write(
        self, what: str, work: Callable[[Connection], object], *, quiet: bool = False
    ) -> bool:
        """Run `work`, retrying a failure within the budget; False (logged, counted) if it
        never succeeded. `quiet`: a failure is only returned (the caller tries otherwise)."""
        failure: BaseException | None = None
        with trio.move_on_after(WRITE_BUDGET_S) as budget:
            for attempt in range(WRITE_ATTEMPTS):
                if attempt:
                    await trio.sleep(WRITE_BACKOFF_S * 2 ** (attempt - 1))
                try:
                    await self.database.run(work)
                    return True
                except SQLAlchemyError as exc:
                    failure = exc
                    if quiet:
                        return False
                    log.warning("storing %s failed (attempt %d)", what, attempt + 1)
        if quiet:
            return False
        METRICS.storage_errors.labels(operation="write").inc()
        late = " in time" if budget.cancelled_caught else ""
        log.error("storing %s failed%s; the stream went on", what, late, exc_info=failure)
        return False

    # --- a message's life ---------------------------------------------------------------

    async def begin_message(
        self, principal: Principal, start: MessageStart
    ) -> NewMessage | ExistingMessage:
        """See queries.begin_message; UnknownMessage for a regenerate of an unknown id."""
        return await self.write_once(
            lambda connection: queries.begin_message(
                connection, owner_of(principal), start, instance=self.instance
            )
        )

    async def record(
        self,
        message_pk: int,
        *,
        events: Sequence[StoredEvent] = (),
        agents: Sequence[AgentAnswer] = (),
        end: MessageEnd | None = None,
        usage: Sequence[UsageLine] = (),
    ) -> bool:
        """One phase of a message: its new events, the agent answers that came in, and (at
        the end) its final state and the tokens it used, all or nothing. True once written;
        False if it could not be (logged and counted).

        While `write_phases` runs, the phase joins the next group write. Cancelled while it
        waits its turn, it is not written; once its write has begun, it is waited for (that
        write is bounded), so a caller never writes a phase twice."""
        phase = _Queued(Phase(message_pk, events, agents, end, usage))
        if not self._group_writing:
            phase.ok = await self.write(f"message {message_pk}", _writer_of([phase.phase]))
            if not phase.ok:
                self._unwritten.append(phase.phase)
            return phase.ok
        self._queue.append(phase)
        self._queued.set()
        try:
            await phase.taken.wait()
        except trio.Cancelled:
            if not phase.taken.is_set():
                self._queue.remove(phase)
                raise
            # Taken in the same instant as the cancel came: its write has begun, so it is
            # waited for, and the caller learns it was written (raising now would have it
            # write the phase again). Its scope is still cancelled: its next checkpoint
            # raises.
        with trio.CancelScope(shield=True):
            await phase.done.wait()
        return phase.ok

    async def write_phases(self) -> None:
        """The store's one writer, for as long as it runs: the phases of every run write
        in as few transactions as the database takes; a group that fails is written phase
        by phase, so one bad phase sinks no other."""
        self._group_writing = True
        try:
            while True:
                await self._queued.wait()
                self._queued = trio.Event()
                group, self._queue = self._queue, []
                for queued in group:
                    queued.taken.set()
                try:
                    await self._write_group(group)
                finally:
                    for queued in group:
                        queued.done.set()
        finally:
            self._group_writing = False
            # Every run has ended before the store closes; a phase still here is lost.
            for queued in self._queue:
                log.error("message %d: a phase was never stored", queued.phase.message_pk)
                METRICS.storage_errors.labels(operation="write").inc()
                queued.taken.set()
                queued.done.set()

    async def _write_group(self, group: list[_Queued]) -> None:
        if len(group) > 1:
            phases = [queued.phase for queued in group]
            if await self.write("a group of phases", _writer_of(phases), quiet=True):
                for queued in group:
                    queued.ok = True
                return
        for queued in group:
            queued.ok = await self.write(
                f"message {queued.phase.message_pk}", _writer_of([queued.phase])
            )
            if not queued.ok:
                self._unwritten.append(queued.phase)

    async def write_unwritten(self) -> int:
        """Write the phases given up while the database was away, oldest first, each once;
        how many were written. Stops at one the database does not take for being away
        (kept, for the next call); one it refuses (say, its write had gone through after
        all) is dropped: its loss was logged when it failed."""
        written = 0
        while self._unwritten:
            phase = self._unwritten[0]
            try:
                await self.database.run(_writer_of([phase]))
            except OperationalError:
                return written
            except SQLAlchemyError:
                log.error(
                    "message %d: a phase kept since the database was away was refused",
                    phase.message_pk,
                    exc_info=True,
                )
            else:
                written += 1
                log.info(
                    "message %d: a phase kept since the database was away is stored now",
                    phase.message_pk,
                )
            self._unwritten.popleft()
        return written

    async def events_after(
        self,
        principal: Principal,
        message_id: str,
        after: int,
        *,
        user: str | None = None,
        version: int | None = None,
    ) -> tuple[Status, tuple[StoredEvent, ...]] | None:
        """`version` None: the newest, the one the id names."""
        owner = owner_of(principal, user)
        return await self.read(
            lambda connection: queries.events_after(connection, owner, message_id, after, version)
        )

    async def stored_end(
        self, principal: Principal, message_id: str, version: int | None = None
    ) -> StoredEnd | None:
        owner = owner_of(principal)
        return await self.read(
            lambda connection: queries.stored_end(connection, owner, message_id, version)
        )

    async def newest_version(self, principal: Principal, message_id: str) -> int | None:
        owner = owner_of(principal)
        return await self.read(
            lambda connection: queries.newest_version(connection, owner, message_id)
        )

    # --- history ------------------------------------------------------------------------

    async def conversations(
        self,
        principal: Principal,
        *,
        limit: int,
        before: tuple[datetime, str] | None,
        user: str | None = None,
    ) -> list[ConversationSummary]:
        owner = owner_of(principal, user)
        return await self.read(
            lambda connection: queries.list_conversations(
                connection, owner, limit=limit, before=before
            )
        )

    async def conversation(
        self, principal: Principal, conversation_id: str, *, user: str | None = None
    ) -> tuple[ConversationSummary, list[MessageDetail]] | None:
        owner = owner_of(principal, user)
        return await self.read(
            lambda connection: queries.get_conversation(connection, owner, conversation_id)
        )

    async def message(
        self, principal: Principal, message_id: str, *, user: str | None = None
    ) -> MessageDetail | None:
        owner = owner_of(principal, user)
        return await self.read(
            lambda connection: queries.get_message(connection, owner, message_id)
        )

    async def delete_conversation(
        self, principal: Principal, conversation_id: str, *, user: str | None = None
    ) -> bool:
        owner = owner_of(principal, user)
        return await self.write_once(
            lambda connection: queries.delete_conversation(connection, owner, conversation_id)
        )

    # --- housekeeping -------------------------------------------------------------------

    async def heartbeat(self) -> None:
        await self.write_once(lambda connection: queries.heartbeat(connection, self.instance))

    async def forget_instance(self) -> None:
        await self.write_once(lambda connection: queries.forget_instance(connection, self.instance))

    async def mark_interrupted(self, *, expiry: timedelta, starting: bool) -> int:
        return await self.write_once(
            lambda connection: queries.mark_interrupted(
                connection, this_instance=self.instance, expiry=expiry, starting=starting
            )
        )

    async def mark_evaluations_interrupted(self, *, expiry: timedelta, starting: bool) -> int:
        return await self.write_once(
            lambda connection: mark_evaluations_interrupted(
                connection, this_instance=self.instance, expiry=expiry, starting=starting
            )
        )

    async def usage(
        self,
        principal: Principal,
        *,
        user: str | None,
        since: str | None,
        until: str | None,
    ) -> list[dict[str, Any]]:
        """Usage in the caller's tenant: its own, or (an admin) a user's or everyone's."""
        if user is None and not principal.is_admin:
            user = principal.user
        elif user is not None:
            owner_of(principal, user)  # only an admin may name another user
        tenant = principal.tenant
        return await self.read(
            lambda connection: queries.usage_report(
                connection, tenant, user=user, since=since, until=until
            )
        )

    async def delete_expired(self, *, older_than: datetime) -> int:
        return await self.write_once(
            lambda connection: queries.delete_expired(connection, older_than=older_than)
        )

    async def delete_expired_evaluations(self, *, older_than: datetime) -> int:
        return await self.write_once(
            lambda connection: delete_expired_evaluations(connection, older_than=older_than)
        )


__all__ = ["ExistingMessage", "NewMessage", "StorageUnavailable", "Store"]
