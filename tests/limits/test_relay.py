"""The relay of a run's frames to Redis, against the machine's Redis: a run that ends while
its frames are on their way (every run does: its end cancels the relay's task) leaves the
client's connection pool as it was, so the hundredth run relays as fast as the first."""

from __future__ import annotations

import secrets

import coredis
import trio
import trio.lowlevel

from service.auth import Principal
from service.runs.relay import RedisRelay, stream_key
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable

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
