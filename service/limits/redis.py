"""The limiter in Redis, shared by every instance: each operation is one round trip running a
Lua script, so it is atomic across instances, and reads the time from Redis itself, so the
instances' clocks do not matter. Concurrency slots are leases in a sorted set that expire
on their own: an instance that dies frees its slots within their TTL.

Keys carry a hash tag (`{...}`), so related keys share a Redis Cluster slot.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from ..redis_client import connect, redis_failures
from .backend import Checked, LimiterError, Rate, Slot, Verdict

if TYPE_CHECKING:
    import coredis

log = logging.getLogger(__name__)

# Seconds as a float, from Redis's own clock. Times are stored with string.format('%.6f'):
# Lua's tostring keeps 14 digits, a tenth of a millisecond at today's epoch. Counts of units
# get a thousandth of slack: the clock's float cannot tell 0.4 from 0.39999998 s.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# A GCRA bucket's verdict, without taking: (allowed, seconds to wait, units left, the TAT
# once taken). A microsecond of slack keeps a full bucket's last unit: (now + interval) - now
# can come out a hair over the interval.
_PEEK = """
local function peek(key, cost, interval, burst)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local capacity = burst * interval
  if new_tat - now > capacity + 1e-6 then
    return false, new_tat - now - capacity, (now + capacity - tat) / interval, tat
  end
  return true, 0, math.floor((now + capacity - new_tat) / interval + 1e-3), new_tat
end
"""

_TAKE = (
    _NOW
    + _PEEK
    + """
local ok, wait, left, new_tat = peek(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                     tonumber(ARGV[3]))
if not ok then
  return {0, tostring(wait), tostring(left)}
end
local ttl_ms = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl_ms)
return {1, '0', tostring(left)}
"""
)

_PEEK_ONLY = (
    _NOW
    + _PEEK
    + """
local ok, wait, left = peek(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {ok and 1 or 0, tostring(wait), tostring(left)}
"""
)

# A request's checks in one step: KEYS = requests, streams, tokens (one hash tag);
# ARGV = the three checks' parameters, an empty string for a check not made.
_CHECK = (
    _NOW
    + _PEEK
    + """
local req_ok, req_wait, req_left, req_tat = true, 0, 0, nil
if ARGV[1] ~= '' then
  req_ok, req_wait, req_left, req_tat = peek(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                             tonumber(ARGV[3]))
end
local tok_ok, tok_wait, tok_left, tok_tat = true, 0, 0, nil
if ARGV[7] ~= '' then
  tok_ok, tok_wait, tok_left, tok_tat = peek(KEYS[3], tonumber(ARGV[7]), tonumber(ARGV[8]),
                                             tonumber(ARGV[9]))
end
local held, limit = 0, tonumber(ARGV[5]) or 0
if ARGV[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  held = redis.call('ZCARD', KEYS[2])
end
local refused, wait = '', 0
if not req_ok then
  refused, wait = 'requests_per_minute', req_wait
elseif ARGV[4] ~= '' and held >= limit then
  refused, wait = 'concurrent_streams', 1
elseif not tok_ok then
  refused, wait = 'tokens_per_minute', tok_wait
end
if refused ~= '' then
  -- Nothing is applied: what is left is what was left before this request.
  if ARGV[1] ~= '' and req_ok then req_left = req_left + tonumber(ARGV[1]) end
  if ARGV[7] ~= '' and tok_ok then tok_left = tok_left + tonumber(ARGV[7]) end
  return {refused, tostring(wait), tostring(req_left), tostring(tok_left),
          tostring(limit - held)}
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], string.format('%.6f', req_tat), 'PX',
             math.ceil((req_tat - now) * 1000) + 1000)
end
if ARGV[4] ~= '' then
  local ttl = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], math.ceil(ttl * 1000) + 1000)
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[3], string.format('%.6f', tok_tat), 'PX',
             math.ceil((tok_tat - now) * 1000) + 1000)
end
return {'', '0', tostring(req_left), tostring(tok_left), tostring(limit - held - 1)}
"""
)

# A run's end in one step: KEYS = tokens, streams; ARGV = unused tokens, interval, lease.
_RELEASE = (
    _NOW
    + """
local unused, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
if unused ~= 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
  local new_tat = math.max(tat - unused * interval, now)
  if new_tat > now then
    redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
"""
)

_GIVE_BACK = (
    _NOW
    + """
local cost, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local new_tat = math.max(tat - cost * interval, now)
if new_tat > now then
  local ttl_ms = math.ceil((new_tat - now) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl_ms)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
)

_ACQUIRE = (
    _NOW
    + """
local limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return 1
"""
)

_REFRESH = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
end
return 1
"""
)

_SPEND = """
local amount, budget, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + amount > budget then return 0 end
redis.call('INCRBY', KEYS[1], amount)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000)) end
return 1
"""

_ADJUST = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
return 1
"""


class RedisBackend:
    def __init__(self, url: str, *, timeout_s: float, prefix: str = "fanout:") -> None:
        self._client: coredis.Redis[str] = connect(url)
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._scripts: dict[str, Any] = {}

    async def __aenter__(self) -> RedisBackend:
        await self._client.__aenter__()
        for name, source in (
            ("check", _CHECK),
            ("release", _RELEASE),
            ("take", _TAKE),
            ("peek", _PEEK_ONLY),
            ("give_back", _GIVE_BACK),
            ("acquire", _ACQUIRE),
            ("refresh", _REFRESH),
            ("spend", _SPEND),
            ("adjust", _ADJUST),
        ):
            self._scripts[name] = self._client.register_script(source)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.__aexit__(None, None, None)

    async def _run(self, script: str, key: str | list[str], *args: object) -> Any:
        keys = [self._prefix + k for k in ([key] if isinstance(key, str) else key)]
        try:
            with trio.fail_after(self._timeout_s):
                return await self._scripts[script](keys=keys, args=list(args))
        except redis_failures() as exc:
            raise LimiterError(f"redis {script}: {exc!r}") from exc

    async def check(
        self, *, requests: Rate | None, slot: Slot | None, tokens: Rate | None
    ) -> Checked:
        # The keys share one hash tag; a check not made still names a key of that tag.
        made = requests or tokens or slot
        anchor = made.key if made is not None else "x"
        keys = [
            requests.key if requests else anchor,
            slot.key if slot else anchor,
            tokens.key if tokens else anchor,
        ]
        args: list[object] = []
        args += [requests.cost, requests.interval_s, requests.burst] if requests else ["", "", ""]
        args += [slot.lease, slot.limit, slot.ttl_s] if slot else ["", "", ""]
        args += [tokens.cost, tokens.interval_s, tokens.burst] if tokens else ["", "", ""]
        refused, wait, requests_left, tokens_left, streams_left = await self._run(
            "check", keys, *args
        )
        return Checked(
            refused or None,
            float(wait),
            max(float(requests_left), 0),
            max(float(tokens_left), 0),
            max(float(streams_left), 0) if slot else 0.0,
        )

    async def release(self, *, tokens: Rate | None, slot: Slot | None) -> None:
        anchor = tokens.key if tokens else slot.key if slot else "x"
        await self._run(
            "release",
            [tokens.key if tokens else anchor, slot.key if slot else anchor],
            tokens.cost if tokens else 0,
            tokens.interval_s if tokens else 1,
            slot.lease if slot else "",
        )

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        allowed, retry_after, remaining = await self._run("take", key, cost, interval_s, burst)
        return Verdict(bool(int(allowed)), float(retry_after), max(float(remaining), 0.0))

    async def peek(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        allowed, retry_after, remaining = await self._run("peek", key, cost, interval_s, burst)
        return Verdict(bool(int(allowed)), float(retry_after), max(float(remaining), 0.0))

    async def give_back(self, key: str, *, cost: float, interval_s: float) -> None:
        await self._run("give_back", key, cost, interval_s)

    async def acquire_slot(self, key: str, lease: str, *, limit: int, ttl_s: float) -> bool:
        return bool(int(await self._run("acquire", key, lease, limit, ttl_s)))

    async def refresh_slot(self, key: str, lease: str, *, ttl_s: float) -> None:
        await self._run("refresh", key, lease, ttl_s)

    async def release_slot(self, key: str, lease: str) -> None:
        try:
            with trio.fail_after(self._timeout_s):
                await self._client.zrem(self._prefix + key, [lease])
        except redis_failures() as exc:
            raise LimiterError(f"redis release: {exc!r}") from exc

    async def spend(self, key: str, amount: int, *, budget: int, ttl_s: float) -> bool:
        return bool(int(await self._run("spend", key, amount, budget, ttl_s)))

    async def adjust(self, key: str, amount: int) -> None:
        await self._run("adjust", key, amount)
