"""What every call of a member shares: its request for one target, attempt counts, logging.

Agents (`answers.py`) and the summarizer (`summary.py`) build on these.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..ensemble import Member, Target
from ..errors import UpstreamError
from ..llm import ChatMessage, ChatModel, ChatRequest, Usage
from ..telemetry.metrics import METRICS
from ..telemetry.tracing import only_cancelled, traceparent_headers
from .context import RunContext

log = logging.getLogger("service.pipeline")


@dataclass
class Attempts:
    """Calls sent for one member so far (`retries` of them repeats of a failed call); read
    after the member was cut, too. `on_retry` hears of each retry as it is decided: the
    attempt that comes next, the model, the error, the wait in seconds. `wasted` holds, per
    model, the calls whose output was not used and their tokens (waste.py)."""

    count: int = 0
    retries: int = 0
    on_retry: Callable[[int, str, UpstreamError, float], None] | None = None
    wasted: dict[str, tuple[int, Usage]] = field(default_factory=dict)

    def waste(self, model: str, usage: Usage) -> None:
        calls, before = self.wasted.get(model, (0, Usage(0, 0)))
        self.wasted[model] = (
            calls + 1,
            Usage(
                before.prompt_tokens + usage.prompt_tokens,
                before.completion_tokens + usage.completion_tokens,
            ),
        )


def call_for(member: Member, target: Target, messages: tuple[ChatMessage, ...]) -> ChatRequest:
    return ChatRequest(
        model=target.model,
        messages=messages,
        caller=member.name,
        endpoint=target.endpoint,
        temperature=member.temperature,
        max_tokens=member.max_tokens,
        # The member's span (current here) becomes the parent of the provider's own trace.
        headers=(*sorted(member.headers.items()), *traceparent_headers()),
    )


_CREDENTIAL = re.compile(r"(Bearer\s+|api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+", re.IGNORECASE)


def cause_chain(error: BaseException) -> str:
    """`UpstreamRateLimited <- RateLimitError: Error code: 429 ...`, for one log line.

    Anything that looks like a credential is masked: a client library may quote the request.
    """
    parts = [type(error).__name__]
    cause = error.__cause__ or error.__context__
    while cause is not None and len(parts) < 5:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    return _CREDENTIAL.sub(r"\1***", " <- ".join(parts))


def log_failed_attempt(
    error: UpstreamError,
    target: Target,
    attempt: int,
    next_step: str,
    context: Mapping[str, object],
) -> None:
    log.info(
        "%s: attempt %d on %s/%s failed with %s (%s); %s",
        context.get("agent"),
        attempt,
        target.endpoint.name if target.endpoint else "default",
        target.model,
        error.code,
        cause_chain(error),
        next_step,
        extra=dict(context),
    )


@contextmanager
def counted_if_cancelled() -> Iterator[None]:
    """Count an upstream call that is cancelled in flight (client gone, straggler cut, hedge
    lost, deadline): its connection is closed, so the provider stops working on it."""
    try:
        yield
    except BaseException as exc:
        if only_cancelled(exc):
            METRICS.cancelled_calls.inc()
        raise


@dataclass(frozen=True)
class MemberCalls:
    """The calls one member makes for one run, whatever they are (complete or stream)."""

    run: RunContext
    member: Member
    messages: tuple[ChatMessage, ...]
    attempts: Attempts
    context: Mapping[str, object]

    @property
    def model(self) -> ChatModel:
        return self.run.model

    def call(self, target: Target) -> ChatRequest:
        self.attempts.count += 1
        return call_for(self.member, target, self.messages)

    def after_failure(
        self, error: UpstreamError, target: Target, *, retries_done: int, last: bool
    ) -> float | None:
        """Log the failed attempt; the wait before retrying it, or None to move on."""
        delay = self.run.retry_policy.delay_before_retry(
            error, retries_done=retries_done, retries=self.member.retries
        )
        if delay is not None:
            self.attempts.retries += 1
            step = f"retrying in {delay:.2f} s"
            if self.attempts.on_retry is not None:
                self.attempts.on_retry(self.attempts.count + 1, target.model, error, delay)
        else:
            step = "giving up" if last else "trying the next fallback model"
        log_failed_attempt(error, target, self.attempts.count, step, self.context)
        return delay
