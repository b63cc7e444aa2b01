"""Following a run on another instance while PostgreSQL is away (a TcpProxy in front of it,
cut): the follower never fails its stream (it used to raise out of the response, and its
client's connection was cut with no terminal event). With Redis it goes on live from the
relay; without, it waits for the database and goes on once it is back."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import coredis
import trio

from service.auth import Principal
from service.launch.stored_frames import RelayedFrames, StoredFrames
from service.runs.relay import RedisRelay, stream_key
from service.storage.database import Database
from service.storage.migrate import migrate
from service.storage.records import StoredEvent
from service.storage.store import Store
from tests.databases import REDIS_URL, forget_redis_prefix, postgres_schema, redis_reachable
from tests.faults.outage import Proxied, proxied
from tests.stored_messages import new_message

FRAMES = [StoredEvent(n, "summary.delta", f'{{"n":{n}}}') for n in range(1, 6)]


@dataclass
class Followed:
    """A running message of `user`: its first two frames stored; `follower` reads the
    database through `proxy`, `writer` writes it directly (the instance running it)."""

    user: Principal
    pk: int
    follower: Store
    writer: Store
    proxy: Proxied


@asynccontextmanager
async def a_running_message() -> AsyncIterator[Followed]:
    user = Principal(user=f"follow-{secrets.token_hex(4)}")
    async with proxied(5432) as proxy:
        with postgres_schema() as url:
            via_proxy = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
            direct = Database.connect(url)
            await trio.to_thread.run_sync(migrate, direct.engine)
            through_proxy = Database.connect(via_proxy)
            try:
                writer = Store(direct, instance="running-it")
                begun = await new_message(writer, user)
                await writer.record(begun.pk, events=FRAMES[:2])
                follower = Store(through_proxy, instance="following-it")
                yield Followed(user, begun.pk, follower, writer, proxy)
            finally:
                through_proxy.close()
                direct.close()


async def test_a_follower_goes_on_from_the_relay_while_the_database_is_away() -> None:
    await redis_reachable()
    client: coredis.Redis[str] = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with a_running_message() as run, client:
        try:
            relay = RedisRelay(client)
            publisher = relay.publisher(run.user, "m-1", 1)
            following = RelayedFrames(run.follower, relay, run.user, "m-1", 1)
            run.proxy.proxy.cut()  # the database is away for the follower
            for frame in FRAMES[2:]:
                publisher.add(frame.event_id, frame.type, frame.data)
            await publisher.close()
            with trio.fail_after(10):
                followed = await following.frames_after(2)
        finally:
            await forget_redis_prefix(stream_key(run.user, "", 0).removesuffix("/0}"))
    assert [event_id for event_id, _, _ in followed] == [3, 4, 5]


async def test_a_follower_without_redis_waits_for_the_database_and_goes_on() -> None:
    async with a_running_message() as run:
        following = StoredFrames(run.follower, run.user, "m-1")
        run.proxy.proxy.cut()
        async with trio.open_nursery() as nursery:

            async def back_with_the_next_phase() -> None:
                await run.writer.record(run.pk, events=FRAMES[2:])
                await trio.sleep(1)  # the outage: the follower keeps asking meanwhile
                await run.proxy.nursery.start(run.proxy.proxy.serve)

            nursery.start_soon(back_with_the_next_phase)
            with trio.fail_after(15):
                followed = await following.frames_after(2)
    assert [event_id for event_id, _, _ in followed] == [3, 4, 5]
