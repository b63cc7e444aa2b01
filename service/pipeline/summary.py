"""The summary stream despite a misbehaving upstream: retries and fallbacks before the first
token, and at most one restart on the next fallback model if the stream breaks after it.

Text that reached the client is never silently continued by another model: a restart is
announced with `SummaryRestarted`, and the client drops what it had.

    result = await stream_summary(run, messages, attempts, send_text=send_text, events=events)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from ..ensemble import Target
from ..errors import UpstreamBadResponse, UpstreamError
from ..events import Event, PublicError, SummaryRestarted
from ..llm import ChatMessage, FinishReason, Usage
from .calls import Attempts, MemberCalls, counted_if_cancelled, log, log_failed_attempt
from .context import RunContext
from .waste import reckoned, spending


@dataclass(frozen=True, slots=True)
class SummaryResult:
    usage: Usage | None
    model: str
    # Why the summary's text ended: `length` when the summarizer's max_tokens cut it.
    finish_reason: FinishReason = "stop"


class _BrokeMidStream(Exception):
    """A stream failed after text was forwarded; carries the upstream error."""

    def __init__(self, error: UpstreamError, index: int) -> None:
        super().__init__(error.code)
        self.error = error
        self.index = index


@dataclass(frozen=True)
class _Streaming(MemberCalls):
    send_text: Callable[[str], Awaitable[None]]
    events: trio.MemorySendChannel[Event]
    # Why the summary is starting over, until the model that restarts it sends its first text.
    pending_restart: list[PublicError] = field(default_factory=list)

    async def forward(self, text: str, target: Target) -> None:
        if self.pending_restart:
            await self.events.send(
                SummaryRestarted(
                    summarizer=self.member.name,
                    model=target.model,
                    error=self.pending_restart.pop(),
                )
            )
        await self.send_text(text)

    async def on_target(self, target: Target, index: int, *, last: bool) -> SummaryResult:
        retries_done = 0
        while True:
            forwarded = False
            request = self.call(target)
            try:
                with counted_if_cancelled(), spending(self.attempts, request) as call:
                    async with self.model.stream(request) as stream:
                        async for text in stream:
                            forwarded = True
                            call.pieces += 1
                            await self.forward(text, target)
                    if not forwarded:
                        call.reported = stream.usage or reckoned(request, 0)
                        raise UpstreamBadResponse(f"{self.member.name} returned an empty summary")
                return SummaryResult(
                    usage=stream.usage, model=target.model, finish_reason=stream.finish_reason
                )
            except UpstreamError as error:
                if forwarded:
                    log_failed_attempt(
                        error, target, self.attempts.count, "the stream broke", self.context
                    )
                    raise _BrokeMidStream(error, index) from error
                delay = self.after_failure(error, target, retries_done=retries_done, last=last)
                if delay is None:
                    raise
                retries_done += 1
                await trio.sleep(delay)

    async def from_index(self, targets: Sequence[Target], start: int) -> SummaryResult:
        """The first target from `start` on that streams a summary."""

        for index in range(start, len(targets)):
            last = index == len(targets) - 1
            try:
                return await self.on_target(targets[index], index, last=last)
            except UpstreamError:
                if last:
                    raise
        raise AssertionError("a summarizer always has at least one target")


async def stream_summary(
    run: RunContext,
    messages: tuple[ChatMessage, ...],
    attempts: Attempts,
    *,
    send_text: Callable[[str], Awaitable[None]],
    events: trio.MemorySendChannel[Event],
) -> SummaryResult:
    """Stream the ensemble's summary of `messages` through `send_text` (a restart is announced
    on `events`); raise the `UpstreamError` that ended it. `attempts` counts every request."""
    summarizer = run.summarizer
    targets = run.ensemble.targets(summarizer)
    context = run.log_context(summarizer.name)
    streaming = _Streaming(
        run, summarizer, messages, attempts, context, send_text=send_text, events=events
    )
    start = 0
    while True:
        try:
            return await streaming.from_index(targets, start)
        except _BrokeMidStream as broke:
            if start > 0 or broke.index + 1 >= len(targets):
                raise broke.error  # noqa: B904  # its own cause (the provider's error) is kept
            start = broke.index + 1
            log.warning(
                "%s: the summary broke after it started; restarting once from %s",
                summarizer.name,
                targets[start].model,
                extra=dict(context),
            )
            # Announced with the first text of the model that restarts it, so the event
            # names the model whose text follows.
            streaming.pending_restart.append(PublicError.of(broke.error))
