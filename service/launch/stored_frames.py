"""The frames of a stored run: a replay of a finished message, or a run in progress on
another instance, followed through the database as its phases are written, and, with
Redis, live through the relay (RelayedFrames).

    frames = StoredFrames(store, principal, "m-1")
    body = EventStreamBody(frames, keepalive_s=15, deadline_s=120, after=last_event_id)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from ..errors import RunInterrupted
from ..event_ids import MAX_EVENT_ID
from ..events import Failed, PublicError
from ..principal import Principal
from ..redis_client import redis_failures
from ..runs.frames import FrameEncoder
from ..runs.live import Part
from ..runs.relay import TIMEOUT_S, RedisRelay, stream_key
from ..storage import FINISHED, StorageUnavailable, Store

log = logging.getLogger(__name__)

TERMINAL_TYPES = frozenset({"done", "error"})
# How long a follower waits on the relay before it looks at the database again.
BLOCK_MS = 1000
# How often a run in progress elsewhere is looked at again. Its phases are written as they
# end (each agent, the summary's start, the end), so this is how late it can show them.
POLL_S = 0.5


async def _ending(
    store: Store, principal: Principal, message_id: str, version: int | None, after: int
) -> list[Part]:
    """What is left of a finished message's stream once its stored events are sent: nothing
    when they end with a terminal event, else an `error` (`interrupted`) to end it, made up
    here: a run whose server died (kill -9) stored none, and a client must still learn the
    stream is over. Its id is MAX_EVENT_ID: the client may hold ids sent live after the
    last stored phase, which nothing remembers (docs/storage.md)."""
    end = await store.stored_end(principal, message_id, version)
    if end is None or end.last_type in TERMINAL_TYPES or after >= MAX_EVENT_ID:
        return []
    encoder = FrameEncoder(message_id=message_id, conversation_id=end.conversation_id)
    interrupted = Failed(source="server", error=PublicError.of(RunInterrupted()))
    _, event_type, data = encoder.encode_parts(interrupted)
    return [(MAX_EVENT_ID, event_type, data)]


async def _from_database(
    store: Store, principal: Principal, message_id: str, version: int | None, after: int
) -> list[Part] | None:
    """What the database has of the message after `after`: its events, or once it has
    finished the end of its stream (nothing, or the made-up `interrupted`); None while
    there is nothing more yet. A database that does not answer is nothing yet too: a
    follower waits for it (live from the relay meanwhile, when there is one) rather than
    cutting its client's stream with no terminal event."""
    try:
        found = await store.events_after(principal, message_id, after, version=version)
        if found is None:
            return []  # deleted while it was followed
        status, events = found
        if events:
            return [(e.event_id, e.type, e.data) for e in events]
        if status in FINISHED:
            return await _ending(store, principal, message_id, version, after)
    except StorageUnavailable:
        log.info("following message %s: the database did not answer; asking again", message_id)
    return None


class StoredFrames:
    """A stored message's frames: `version` None is the newest (the one its id names)."""

    def __init__(
        self, store: Store, principal: Principal, message_id: str, version: int | None = None
    ) -> None:
        self._store = store
        self._principal = principal
        self._message_id = message_id
        self._version = version

    async def frames_after(self, after: int) -> Sequence[Part]:
        while True:
            stored = await _from_database(
                self._store, self._principal, self._message_id, self._version, after
            )
            if stored is not None:
                return stored
            await trio.sleep(POLL_S)


class RelayedFrames:
    """A run on another instance: the database's phases, then the Redis Stream, live. Only
    frames that follow on from the last one sent are taken from the Stream: a gap (frames
    the relay lost) is filled from the database first, so Redis going away costs liveness,
    never an event."""

    def __init__(
        self, store: Store, relay: RedisRelay, principal: Principal, message_id: str, version: int
    ) -> None:
        self._store = store
        self._client = relay.client
        self._principal = principal
        self._message_id = message_id
        self._version = version
        self._key = stream_key(principal, message_id, version)
        self._cursor = "0-0"

    async def frames_after(self, after: int) -> Sequence[Part]:
        while True:
            stored = await _from_database(
                self._store, self._principal, self._message_id, self._version, after
            )
            if stored is not None:
                return stored
            frames = await self._read(after)
            if frames:
                return frames

    async def _read(self, after: int) -> list[Part]:
        try:
            with trio.fail_after(BLOCK_MS / 1000 + TIMEOUT_S):
                answer = await self._client.xread({self._key: self._cursor}, block=BLOCK_MS)
        except redis_failures() as exc:
            log.info("could not follow a run in Redis (%s); reading the database", exc)
            await trio.sleep(BLOCK_MS / 1000)
            return []
        frames: list[Part] = []
        for entries in (answer or {}).values():
            for entry in entries:
                self._cursor = str(entry.identifier)
                fields = entry.field_values
                event_id = int(fields["id"])
                if event_id <= after + len(frames):
                    continue
                if event_id != after + len(frames) + 1:
                    # The relay lost the frames between (sent while Redis was away, or
                    # restarted empty): the database has them once their phase is written,
                    # and the frames after them with it. Never jump over them.
                    return frames
                frames.append((event_id, str(fields["type"]), str(fields["data"])))
        return frames
