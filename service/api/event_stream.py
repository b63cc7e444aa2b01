"""A Quart response body that runs a pipeline for exactly as long as its response lives.

Quart enters the body, iterates it and leaves it in the one task that writes the response,
so the pipeline's nursery is opened in `__aenter__` and closed in `__aexit__`, and no cancel
scope ever crosses a `yield`. When the client hangs up, Quart-Trio cancels that task, and
with it the nursery, every agent and the summarizer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType

import trio
from opentelemetry import context as otel_context
from opentelemetry import trace
from quart.wrappers.response import ResponseBody

from ..connections.record import current_connection
from ..errors import ServiceError, ShuttingDown
from ..lifecycle import Lifecycle
from ..pipeline import TERMINAL_EVENTS, Event, Failed, PublicError
from ..telemetry.stream import StreamTelemetry
from .sse import KEEPALIVE, SseEncoder

log = logging.getLogger(__name__)

# Room for a burst of summary tokens while the client's socket drains.
EVENT_BUFFER = 32
# After the stream's deadline, the time its last event has to reach a client whose socket
# is full; then the connection is closed (a client that stopped reading holds nothing).
FINAL_WRITE_S = 2.0

Producer = Callable[[trio.MemorySendChannel[Event]], Awaitable[None]]


class EventStreamBody(ResponseBody):
    def __init__(
        self,
        produce: Producer,
        *,
        encoder: SseEncoder,
        lifecycle: Lifecycle,
        keepalive_s: float,
        deadline_s: float,
        log_context: dict[str, str],
        telemetry: StreamTelemetry | None = None,
    ) -> None:
        self._produce = produce
        self._telemetry = telemetry
        self._encoder = encoder
        self._lifecycle = lifecycle
        self._keepalive_s = keepalive_s
        self._deadline_s = deadline_s
        self._log_context = log_context
        self._finished = False
        self._nursery_manager = trio.open_nursery()
        self._events: trio.MemoryReceiveChannel[Event] | None = None

    async def __aenter__(self) -> EventStreamBody:
        if self._telemetry is not None:
            self._telemetry.start()
        connection = current_connection()
        if connection is not None:
            connection.write_deadline = trio.current_time() + self._deadline_s + FINAL_WRITE_S
        nursery = await self._nursery_manager.__aenter__()
        send, self._events = trio.open_memory_channel[Event](EVENT_BUFFER)
        nursery.start_soon(self._run, send, name="pipeline")
        self._cancel_scope = nursery.cancel_scope
        return self

    async def __aexit__(  # type: ignore[override]  # the nursery may swallow its own Cancelled
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._cancel_scope.cancel()
        if self._events is not None:
            self._events.close()
        try:
            return await self._nursery_manager.__aexit__(exc_type, exc_value, traceback)
        finally:
            connection = current_connection()
            if connection is not None:
                connection.write_deadline = math.inf
            if self._telemetry is not None:
                self._telemetry.finish(disconnected=not self._finished)

    def __aiter__(self) -> EventStreamBody:
        return self

    async def __anext__(self) -> bytes:
        if self._finished or self._events is None:
            raise StopAsyncIteration
        with trio.move_on_after(self._keepalive_s):
            try:
                event = await self._events.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            chunks = [self._encoded(event)]
            # Events already waiting (a burst of tokens) leave in the same write: a socket
            # send per event was a quarter of the service's CPU at saturation.
            while not self._finished:
                try:
                    event = self._events.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                chunks.append(self._encoded(event))
            return b"".join(chunks)
        return KEEPALIVE

    def _encoded(self, event: Event) -> bytes:
        self._finished = isinstance(event, TERMINAL_EVENTS)
        if self._telemetry is not None:
            self._telemetry.observe(event)
        return self._encoder.encode(event)

    async def _run(self, events: trio.MemorySendChannel[Event]) -> None:
        """Run the producer; make sure the stream ends with `done` or `error` whatever happens."""
        if self._telemetry is not None:
            # This task and every task it starts (agents, summary) see the request span.
            otel_context.attach(trace.set_span_in_context(self._telemetry.span))
        async with events:
            shutdown_scope = trio.CancelScope()
            self._lifecycle.track(shutdown_scope)
            failure: ServiceError | None = None
            try:
                with shutdown_scope:
                    await self._produce(events.clone())
            except Exception as exc:
                log.exception("the pipeline crashed", extra=self._log_context)
                failure = ServiceError()
                failure.__cause__ = exc
            finally:
                self._lifecycle.untrack(shutdown_scope)
            if shutdown_scope.cancelled_caught:
                log.warning("stream ended by shutdown", extra=self._log_context)
                failure = ShuttingDown()
            if failure is not None:
                source = "server"
                await events.send(Failed(source=source, error=PublicError.of(failure)))
