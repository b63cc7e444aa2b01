"""The live relay between instances: the instance running a message also appends its frames
to a Redis Stream, so a join or a resume that lands on another instance follows the run
live instead of waiting for the database's phases.

    relay = RedisRelay(client)
    out = relay.publisher(principal, "m-1", 1)     # the running instance: a run's consumer
    out.add(event_id, event_type, data); out.flush()
    RelayedFrames(store, relay, principal, "m-1", 1)  # any other instance (launch/stored_frames.py)

Streams are trimmed (MAXLEN) and expire an hour after their last frame. Redis going away
costs only liveness: followers read the database's phases, as they would without Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..key_parts import key_part
from ..principal import Principal
from ..redis_client import redis_failures
from ..telemetry.metrics import METRICS

if TYPE_CHECKING:
    import coredis

log = logging.getLogger(__name__)

MAX_FRAMES = 20_000
EXPIRE_S = 3600
TIMEOUT_S = 1.0
GATHER_S = 0.02


def stream_key(principal: Principal, message_id: str, version: int) -> str:
    """The run's stream: its parts encoded, so no two owners' runs share one (a `/` in a
    tenant or user name once could), and the whole key is its own hash tag. Each version of
    a message id has its own: two may run at once."""
    parts = (principal.tenant, principal.user, message_id, str(version))
    return "fanout:events:{" + "/".join(key_part(part) for part in parts) + "}"


class RedisRelay:
    def __init__(self, client: coredis.Redis[str]) -> None:
        self.client = client

    def publisher(self, principal: Principal, message_id: str, version: int) -> RelayPublisher:
        return RelayPublisher(self.client, stream_key(principal, message_id, version))


@dataclass
class RelayPublisher:
    """One run's events on their way to Redis, sent by a task of the run (never on the
    stream's own path): the bursts of GATHER_S are one pipelined round trip."""

    client: coredis.Redis[str]
    key: str
    _pending: list[tuple[int, str, str]] = field(default_factory=list)
    _ready: trio.Event = field(default_factory=trio.Event)
    _closed: bool = False
    _sending: trio.Lock = field(default_factory=trio.Lock)

    def add(self, event_id: int, event_type: str, data: str) -> None:
        self._pending.append((event_id, event_type, data))

    def flush(self) -> None:
        self._ready.set()

    async def send_in_background(self) -> None:
        while not self._closed:
            await self._ready.wait()
            # The bursts of the next moment go along: one round trip for many (a follower
            # on another instance sees them at most this much later; `close` sends the rest).
            await trio.sleep(GATHER_S)
            self._ready = trio.Event()
            # Never cancelled halfway (the run ends by cancelling this task): coredis loses
            # the pooled connection of a pipeline cancelled in flight, and once the pool is
            # empty every relay waits out its timeout. `_send` is bounded on its own.
            with trio.CancelScope(shield=True):
                await self._send()

    async def close(self) -> None:
        """Send what is left (shielded and bounded by the caller)."""
        self._closed = True
        await self._send()

    async def _send(self) -> None:
        # One send at a time, each taking what is pending when its turn comes: the run's
        # last send (`close`) never overtakes one in flight, so frames arrive in order.
        async with self._sending:
            await self._send_pending()

    async def _send_pending(self) -> None:
        from coredis.tokens import PureToken  # Redis is loaded on first use (redis_client.py)

        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with trio.fail_after(TIMEOUT_S):
                async with self.client.pipeline(transaction=False) as pipe:
                    for event_id, event_type, data in batch:
                        pipe.xadd(
                            self.key,
                            {"id": str(event_id), "type": event_type, "data": data},
                            trim_strategy=PureToken.MAXLEN,
                            threshold=MAX_FRAMES,
                            trim_operator=PureToken.APPROXIMATELY,
                        )
                    pipe.expire(self.key, EXPIRE_S)
        except redis_failures() as exc:
            METRICS.limiter_errors.labels(operation="relay").inc()
            log.warning("could not relay %d frame(s) to Redis: %s", len(batch), exc)
