"""The relay of a run's frames to Redis, against the machine's Redis: a run that ends while
its frames are on their way (every run does: its end cancels the relay's task) leaves the
client's connection pool as it was, so the hundredth run relays as fast as the first; and a
follower on another instance never jumps over frames the relay lost."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import coredis
import trio
import trio.lowlevel

from service.auth import Principal
from service.launch.stored_frames import RelayedFrames
from service.runs.relay import RedisRelay, stream_key
from service.storage.database import Database
from service.storage.migrate import migrate
from service.storage.records import StoredEvent
from service.storage.store import Store
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.stored_messages import new_message

RUNS = 100  # more than the client's pool holds (coredis: 64)


async def test_runs_cancelled_while_relaying_lose_no_pooled_connection() -> None:
    await redis_reachable()
    user = Principal(user=f"relay-{secrets.token_hex(4)}")
    prefix = stream_key(user, "", 0).removesuffix("/0}")  # every key of this test's runs
    client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with client:
            relay = RedisRelay(client)
            for run in range(RUNS):
                publisher = relay.publisher(user, f"m-{run}", 1)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publisher.send_in_background)
                    publisher.add(1, "done", "{}")
                    publisher.flush()
                    for _ in range(3):  # the send is under way...
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()  # ...when the run ends
            with trio.fail_after(2):
                last = relay.publisher(user, "last", 1)
                last.add(1, "done", "{}")
                await last.close()
                frames = await client.xlen(last.key)
    finally:
        await forget_redis_prefix(prefix)
    assert frames == 1


async def test_the_last_send_never_overtakes_one_in_flight() -> None:
    """The run's end sends what is left while the background send may still be on its way:
    the frames reach Redis in their order, each once."""
    await redis_reachable()
    user = Principal(user=f"relay-{secrets.token_hex(4)}")
    client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with client:
            publisher = RedisRelay(client).publisher(user, "m-1", 1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publisher.send_in_background)
                for event_id in range(1, 201):
                    publisher.add(event_id, "summary.delta", "{}")
                    if event_id % 20 == 0:
                        publisher.flush()
                        await trio.sleep(0.005)
                await publisher.close()
                nursery.cancel_scope.cancel()
            entries = await client.xrange(publisher.key)
    finally:
        await forget_redis_prefix(stream_key(user, "", 0).removesuffix("/0}"))
    ids = [int(entry.field_values["id"]) for entry in entries]
    assert ids == list(range(1, 201))


class WatchedRedis(coredis.Redis[str]):
    """The client a follower reads the relay with, telling when a read has come back."""

    read: trio.Event

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        answer = await super().xread(*args, **kwargs)
        self.read.set()
        return answer


async def test_a_follower_takes_no_frame_after_a_gap_the_relay_lost(tmp_path: Path) -> None:
    """Redis restarted (or away) while a run was relaying: the frames sent meanwhile are
    lost, and the relay goes on with the next ones. A follower must not jump over the
    missing ones to those: it reads them from the database, where their phase lands."""
    await redis_reachable()
    user = Principal(user=f"relay-{secrets.token_hex(4)}")
    database = Database.connect(f"sqlite:///{tmp_path / 'fanout.db'}")
    migrate(database.engine)
    store = Store(database, instance="running-it")
    client = WatchedRedis.from_url(REDIS_URL, decode_responses=True)
    client.read = trio.Event()
    try:
        async with client:
            begun = await new_message(store, user)
            frames = [StoredEvent(n, "summary.delta", f'{{"n":{n}}}') for n in range(1, 8)]
            await store.record(begun.pk, events=frames[:2])  # the agents' phase: 1 and 2
            publisher = RedisRelay(client).publisher(user, "m-1", 1)
            for frame in frames[4:]:  # 3 and 4 were sent while Redis was away
                publisher.add(frame.event_id, frame.type, frame.data)
            await publisher.close()
            follower = RelayedFrames(store, RedisRelay(client), user, "m-1", 1)

            async def summary_phase_stored() -> None:
                await client.read.wait()
                await store.record(begun.pk, events=frames[2:])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(summary_phase_stored)
                with trio.fail_after(10):
                    followed = await follower.frames_after(2)
    finally:
        await forget_redis_prefix(stream_key(user, "", 0).removesuffix("/0}"))
        database.close()
    assert [event_id for event_id, _, _ in followed] == [3, 4, 5, 6, 7]
