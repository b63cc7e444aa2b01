"""The housekeeping loop: a heartbeat, other instances' orphans, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio
from sqlalchemy import select, update

from service.auth import ANONYMOUS
from service.storage import keep_house
from service.storage.database import Database
from service.storage.migrate import migrate
from service.storage.queries import as_utc
from service.storage.records import MessageEnd, StoredEvent
from service.storage.schema import conversations, instances, message_events, messages
from service.storage.store import Store
from tests.databases import postgres_schema
from tests.faults.outage import proxied
from tests.stored_messages import new_message

LONG_AGO = datetime.now(UTC) - timedelta(days=3)


async def begin(store: Store, message_id: str, conversation_id: str) -> None:
    await new_message(store, ANONYMOUS, message_id, conversation_id=conversation_id)


async def statuses(database: Database) -> dict[str, str]:
    return await database.run(
        lambda c: dict(c.execute(select(messages.c.message_id, messages.c.status)).all())
    )


async def test_keep_house_beats_takes_over_orphans_and_deletes_old_conversations(
    store: Store, database: Database
) -> None:
    gone = Store(database, instance="gone")
    await begin(gone, "orphan", "recent")
    await gone.heartbeat()
    await begin(store, "old", "old")
    await begin(store, "fresh", "recent")
    await database.run(
        lambda c: (
            c.execute(update(instances).values(heartbeat_at=LONG_AGO)),
            c.execute(
                update(conversations).where(conversations.c.id == "old").values(updated_at=LONG_AGO)
            ),
        )
    )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_house, store, 0.05, 1.0)
        with trio.fail_after(5):
            while await statuses(database) != {"orphan": "interrupted", "fresh": "running"}:  # noqa: ASYNC110
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()

    beats = await database.run(lambda c: dict(c.execute(select(instances)).all()))
    assert as_utc(beats["test-instance"]) > LONG_AGO


async def beaten_since(database: Database, instance: str, since: datetime) -> bool:
    beats = await database.run(lambda c: dict(c.execute(select(instances)).all()))
    return instance in beats and as_utc(beats[instance]) > since


async def test_after_an_outage_another_instance_gets_an_expiry_to_beat_again() -> None:
    """The database away longer than a heartbeat's expiry: no instance could beat meanwhile.
    The first one back must not take another's running messages for a dead instance's at
    once; the other gets a whole expiry to beat again (a restart of PostgreSQL through
    nginx found `done` messages stored `interrupted` by the replica that had not run them)."""
    heartbeat_s = 0.2
    expiry_s = heartbeat_s * 3
    async with proxied(5432) as proxy:
        with postgres_schema() as url:
            via_proxy = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
            this_database = Database.connect(via_proxy)
            await trio.to_thread.run_sync(migrate, this_database.engine)  # via the proxy
            other_database = Database.connect(url)
            try:
                this = Store(this_database, instance="this")
                other = Store(other_database, instance="other")
                await begin(other, "theirs", "c")
                await other.heartbeat()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(keep_house, this, heartbeat_s, None)
                    # Away for two expiries: neither instance could beat meanwhile.
                    await proxy.outage(expiry_s * 2)
                    back = datetime.now(UTC)
                    with trio.fail_after(10):
                        # Two beats of this instance once back: the first one's iteration
                        # is where the takeover used to happen.
                        while not await beaten_since(this_database, "this", back):  # noqa: ASYNC110
                            await trio.sleep(0.02)
                        first = datetime.now(UTC)
                        while not await beaten_since(this_database, "this", first):  # noqa: ASYNC110
                            await trio.sleep(0.02)
                    taken_at_once = await statuses(other_database) != {"theirs": "running"}
                    # The other instance is alive: slower to reach the database again, it
                    # beats from now on.
                    nursery.start_soon(keep_house, other, heartbeat_s, None)
                    until = back + timedelta(seconds=expiry_s * 2)
                    with trio.fail_after(10):
                        while not await beaten_since(this_database, "this", until):  # noqa: ASYNC110
                            await trio.sleep(0.02)
                    nursery.cancel_scope.cancel()
                kept = await statuses(other_database)
            finally:
                this_database.close()
                other_database.close()
    assert not taken_at_once, "taken for a dead instance's the moment the database was back"
    assert kept == {"theirs": "running"}


async def test_a_run_whose_last_write_failed_is_stored_whole_once_the_database_is_back() -> None:
    """Its end could not be written while PostgreSQL was away: the message stayed `running`
    for as long as its instance lived, and every resume of it was kept open for good. The
    store keeps such phases and housekeeping writes them once the database answers."""
    async with proxied(5432) as proxy:
        with postgres_schema() as url:
            via_proxy = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
            database = Database.connect(via_proxy)
            await trio.to_thread.run_sync(migrate, database.engine)
            try:
                store = Store(database, instance="this")
                await begin(store, "lost-end", "c")
                pk = await database.run(lambda c: c.execute(select(messages.c.pk)).scalar_one())
                end = MessageEnd("completed", "The answer.", None, {}, {}, None)
                proxy.proxy.cut()
                written = await store.record(pk, events=[StoredEvent(1, "done", "{}")], end=end)
                await proxy.nursery.start(proxy.proxy.serve)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(keep_house, store, 0.05, None)
                    with trio.fail_after(10):
                        while await statuses(database) != {"lost-end": "completed"}:  # noqa: ASYNC110
                            await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()
                events = await database.run(
                    lambda c: c.execute(select(message_events.c.last_event_id)).scalars().all()
                )
            finally:
                database.close()
    assert not written
    assert events == [1]
