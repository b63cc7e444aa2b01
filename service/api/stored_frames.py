"""The frames of a stored run: a replay of a finished message, or a run in progress on
another instance, followed through the database as its phases are written.

    frames = StoredFrames(store, principal, "m-1")
    body = EventStreamBody(frames, keepalive_s=15, deadline_s=120, after=last_event_id)
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..auth import Principal
from ..storage import FINISHED, Store
from .sse import frame

# How often a run in progress elsewhere is looked at again. Its phases are written as they
# end (each agent, the summary's start, the end), so this is how late it can show them.
POLL_S = 0.5


class StoredFrames:
    def __init__(self, store: Store, principal: Principal, message_id: str) -> None:
        self._store = store
        self._principal = principal
        self._message_id = message_id

    async def frames_after(self, after: int) -> Sequence[bytes]:
        while True:
            found = await self._store.events_after(self._principal, self._message_id, after)
            if found is None:
                return []  # deleted while it was followed
            status, events = found
            if events:
                return [frame(e.event_id, e.type, e.data) for e in events]
            if status in FINISHED:
                return []
            await trio.sleep(POLL_S)
