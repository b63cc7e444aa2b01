"""What the database kept, read straight from it (not through the service under test): each
message's status and the ids of the events stored for it.

    kept = await stored_messages(direct_url)
    kept["m-1"].status, kept["m-1"].event_ids
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import trio
from sqlalchemy import create_engine, text


@dataclass(frozen=True)
class StoredMessage:
    pk: int
    message_id: str
    status: str
    error_code: str | None
    event_ids: tuple[int, ...]
    last_event_type: str | None
    # The instance that ran it (INSTANCE_ID; a cluster's replica name).
    instance: str | None = None

    def has_events_up_to(self, last_id: int) -> bool:
        """Every event from 1 to `last_id` is stored, once, and nothing after it."""
        return self.event_ids == tuple(range(1, last_id + 1))


def _read(url: str) -> dict[str, StoredMessage]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT pk, message_id, status, error_code, instance FROM messages")
            ).all()
            stored: dict[int, list[list[object]]] = {}
            for message_pk, events in connection.execute(
                text(
                    "SELECT message_pk, events FROM message_events"
                    " ORDER BY message_pk, last_event_id"
                )
            ):
                stored.setdefault(message_pk, []).extend(json.loads(events))
    finally:
        engine.dispose()
    messages = {}
    for pk, message_id, status, error_code, instance in rows:
        events = stored.get(pk, [])
        messages[message_id] = StoredMessage(
            pk=pk,
            message_id=message_id,
            status=status,
            error_code=error_code,
            event_ids=tuple(int(event[0]) for event in events),  # type: ignore[call-overload]
            last_event_type=str(events[-1][1]) if events else None,
            instance=instance,
        )
    return messages


async def stored_messages(url: str) -> dict[str, StoredMessage]:
    """Every message of the database at `url`, by message id."""
    return await trio.to_thread.run_sync(_read, url)
