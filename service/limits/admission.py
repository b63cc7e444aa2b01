"""Admission and settlement: a request is checked against its caller's limits before it
runs, and what it reserved is settled when its run ends.

    admission = await limiter.admit(principal, address, anonymous=False, estimate_tokens=3000)
    ...                                   # raises RateLimited (429) or LimiterUnavailable (503)
    await admission.settle(used_tokens)   # the run ended: unused tokens go back, slot freed

    held = await limiter.admit_stream(principal, address, anonymous=False)   # a resume
    body = EventStreamBody(..., drive=held.hold)   # the slot is freed when the stream ends

Requests are a GCRA rate with a burst; streams are leased slots; tokens per minute are
reserved up front (fan-out aware: every agent's and the summarizer's `max_tokens`, or an
estimate) and settled with what the providers reported; a tenant's daily budget likewise.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import trio

from ..errors import LimiterUnavailable, RateLimited
from ..key_parts import key_part
from ..principal import Principal
from ..telemetry.metrics import METRICS
from .backend import LimiterBackend, LimiterError, Rate, Slot
from .policy import LimitPolicy, Limits

log = logging.getLogger(__name__)

# A stream's slot is a lease this long (STREAM_LEASE_S), renewed while the stream runs: a
# crashed instance's slots free themselves within it.
LEASE_S = 30.0
# How long freeing a slot may take once its stream is over (Redis has its own timeout).
SETTLE_S = 5.0
DAY_S = 86_400.0

OnError = Literal["open", "closed"]


@dataclass
class Admission:
    """What one admitted request holds until it is settled."""

    backend: LimiterBackend | None
    limits: Limits
    identity: str
    headers: dict[str, str] = field(default_factory=dict)
    reserved_tokens: int = 0
    tokens_key: str | None = None
    token_interval_s: float = 0.0
    budget_key: str | None = None
    # The stream's slot, a lease renewed while the run lasts.
    slot: Slot | None = None
    settled: bool = False

    async def keep_lease(self) -> None:
        """Renew the stream's slot while the run lasts (a task in the run's nursery)."""
        backend, slot = self.backend, self.slot
        if backend is None or slot is None:
            return
        while True:
            await trio.sleep(slot.ttl_s / 3)
            try:
                await backend.refresh_slot(slot.key, slot.lease, ttl_s=slot.ttl_s)
            except LimiterError as exc:
                log.warning("could not renew a stream's slot: %s", exc)

    async def hold(self) -> None:
        """Hold the stream's slot until cancelled (the stream ended or its client left),
        then free it: for a stream that runs nothing (a resume), in its response's nursery."""
        try:
            await self.keep_lease()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_S):
                await self.settle(None)

    async def keep_only_the_slot(self) -> None:
        """A stream that turns out to run nothing (a join or a replay of a message sent
        before): give back the tokens and budget reserved, keep the stream's slot (`hold`
        frees it when the stream ends). Never raises."""
        if self.settled or self.backend is None:
            return
        unused, tokens_key, budget_key = self.reserved_tokens, self.tokens_key, self.budget_key
        self.reserved_tokens, self.tokens_key, self.budget_key = 0, None, None
        try:
            if tokens_key is not None:
                tokens = Rate(tokens_key, unused, self.token_interval_s, 0)
                await self.backend.release(tokens=tokens, slot=None)
            if budget_key is not None and unused:
                await self.backend.adjust(budget_key, -unused)
        except LimiterError as exc:
            METRICS.limiter_errors.labels(operation="settle").inc()
            log.warning("could not give back a follower's reservation: %s", exc)

    async def settle(self, used_tokens: int | None) -> None:
        """Give back what was reserved and not used (`None`: nothing ran; all of it), and
        free the stream's slot. Once; never raises."""
        if self.settled or self.backend is None:
            return
        self.settled = True
        unused = self.reserved_tokens - (used_tokens or 0)
        try:
            if self.tokens_key is not None or self.slot is not None:
                tokens = (
                    Rate(self.tokens_key, unused, self.token_interval_s, 0)
                    if self.tokens_key is not None
                    else None
                )
                await self.backend.release(tokens=tokens, slot=self.slot)
            if self.budget_key is not None and unused:
                await self.backend.adjust(self.budget_key, -unused)
        except LimiterError as exc:
            METRICS.limiter_errors.labels(operation="settle").inc()
            log.warning("could not settle a request's limits: %s", exc)


class Limiter:
    def __init__(
        self,
        policy: LimitPolicy,
        backend: LimiterBackend,
        *,
        on_error: OnError,
        lease_s: float = LEASE_S,
    ) -> None:
        self.policy = policy
        self.backend = backend
        self.on_error = on_error
        self.lease_s = lease_s

    async def admit(
        self,
        principal: Principal,
        address: str,
        *,
        anonymous: bool,
        max_tokens: Sequence[int | None] | None,
    ) -> Admission:
        """Check and reserve; `max_tokens` has one entry per upstream call the run will make
        (each agent and the summarizer), None where the member sets no `max_tokens`; None
        for a stream that runs nothing (see `admit_stream`)."""
        limits = self.policy.for_caller(principal, anonymous=anonymous)
        estimate_tokens = (
            None
            if max_tokens is None
            else sum(
                tokens if tokens is not None else limits.estimate_tokens_per_call
                for tokens in max_tokens
            )
        )
        identity = (
            f"ip:{address}"
            if anonymous
            else (
                f"key:{principal.key_id}"
                if principal.key_id
                else f"user:{key_part(principal.tenant)}/{key_part(principal.user)}"
            )
        )
        admission = Admission(self.backend, limits, identity)
        try:
            await self._check(admission, principal.tenant, anonymous, estimate_tokens)
        except LimiterError as exc:
            METRICS.limiter_errors.labels(operation="admit").inc()
            await admission.settle(None)
            if self.on_error == "closed":
                log.error(
                    "rate limiter unreachable; refusing (RATE_LIMIT_ON_ERROR=closed): %s", exc
                )
                raise LimiterUnavailable() from exc
            log.warning("rate limiter unreachable; admitting (RATE_LIMIT_ON_ERROR=open): %s", exc)
            return Admission(None, limits, identity)
        except RateLimited as refused:
            await admission.settle(None)
            METRICS.rate_limited.labels(limit=refused.limit).inc()
            refused.headers.update(admission.headers)
            raise
        return admission

    async def admit_stream(
        self, principal: Principal, address: str, *, anonymous: bool
    ) -> Admission:
        """A stream that runs nothing (a resume): it takes one of the caller's
        `concurrent_streams` slots, like a run's stream, and nothing else."""
        return await self.admit(principal, address, anonymous=anonymous, max_tokens=None)

    async def _check(
        self, admission: Admission, tenant: str, anonymous: bool, estimate_tokens: int | None
    ) -> None:
        """`estimate_tokens` None: a stream that runs nothing, checked for its slot only."""
        limits = admission.limits
        runs = estimate_tokens is not None
        tag = "{" + admission.identity + "}"
        requests = tokens = None
        slot = None
        policies: list[str] = []
        if runs and limits.requests_per_minute is not None:
            interval = 60.0 / limits.requests_per_minute
            burst = limits.burst or 1
            requests = Rate(f"rl:{tag}:requests", 1, interval, burst)
            policies.append(f'"requests";q={burst};w={_seconds(burst * interval)}')
        if limits.concurrent_streams is not None:
            slot = Slot(
                f"rl:{tag}:streams", secrets.token_hex(8), limits.concurrent_streams, self.lease_s
            )
            # No window: a slot comes back when a stream ends, not on a clock.
            policies.append(f'"streams";q={limits.concurrent_streams}')
        if estimate_tokens is not None and limits.tokens_per_minute is not None:
            tokens = Rate(
                f"rl:{tag}:tokens",
                estimate_tokens,
                60.0 / limits.tokens_per_minute,
                limits.tokens_per_minute,
            )
            policies.append(f'"tokens";q={limits.tokens_per_minute};w=60')
        if requests is not None or slot is not None or tokens is not None:
            checked = await self.backend.check(requests=requests, slot=slot, tokens=tokens)
            states = []
            if requests is not None:
                interval = requests.interval_s
                states.append(
                    f'"requests";r={int(checked.requests_remaining)};t={_seconds(interval)}'
                )
            if tokens is not None:
                states.append(f'"tokens";r={int(checked.tokens_remaining)};t=60')
            if slot is not None:
                states.append(f'"streams";r={int(checked.streams_remaining)}')
            admission.headers = header_fields(policies, states) if policies else {}
            if checked.refused is not None:
                raise RateLimited(checked.refused, checked.retry_after_s)
            if slot is not None:
                admission.slot = slot
            if tokens is not None and estimate_tokens is not None:
                admission.tokens_key, admission.token_interval_s = tokens.key, tokens.interval_s
                admission.reserved_tokens = estimate_tokens
        budget = None if anonymous or not runs else self.policy.tenant_budget(tenant)
        if budget is not None and estimate_tokens is not None:
            now = datetime.now(UTC)
            key = f"rl:{{tenant:{key_part(tenant)}}}:day:{now.date().isoformat()}"
            if not await self.backend.spend(key, estimate_tokens, budget=budget, ttl_s=2 * DAY_S):
                midnight = datetime.combine(
                    now.date() + timedelta(days=1), datetime.min.time(), UTC
                )
                raise RateLimited("tokens_per_day", (midnight - now).total_seconds())
            admission.budget_key = key
            admission.reserved_tokens = estimate_tokens


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def header_fields(policies: list[str], states: list[str]) -> dict[str, str]:
    """The IETF RateLimit-Policy and RateLimit fields (structured lists, one item a limit)."""
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(states)}
