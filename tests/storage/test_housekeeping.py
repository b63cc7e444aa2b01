"""The housekeeping loop: a heartbeat, other instances' orphans, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio
from sqlalchemy import select, update

from service.auth import ANONYMOUS
from service.storage import MessageStart, NewMessage, keep_house
from service.storage.database import Database
from service.storage.queries import as_utc
from service.storage.schema import conversations, instances, messages
from service.storage.store import Store

LONG_AGO = datetime.now(UTC) - timedelta(days=3)


async def begin(store: Store, message_id: str, conversation_id: str) -> None:
    begun = await store.begin_message(
        ANONYMOUS,
        MessageStart(
            message_id=message_id,
            conversation_id=conversation_id,
            question="Q?",
            ensemble="default",
            ensemble_version="v",
            trace_id=None,
            history_max_chars=0,
        ),
    )
    assert isinstance(begun, NewMessage)


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
