"""One run, driven from its pipeline to everyone who consumes it.

The driver starts the pipeline, and hands each event it sends, in order, to the run's
consumers: telemetry (metrics and the request span), the recorder (the stored transcript),
the limiter's settlement, and the encoder, whose parts go into the `LiveRun` that responses
read and present (and, with Redis, to the relay). Whatever happens, the run ends with
exactly one terminal event: `done` or `error`, the latter also when the pipeline crashed,
the server shut down, or (the run being cancelled because its client left) `cancelled`, so a
stored or joined stream always has its end.

It runs in the response's own nursery when a hang-up cancels the run (the default), or in
the server's when the run continues without its client (`on_disconnect: "continue"`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from opentelemetry import context as otel_context
from opentelemetry import trace

from ..errors import RunCancelled, ServiceError, ShuttingDown
from ..events import TERMINAL_EVENTS, Event, Failed, PublicError
from ..lifecycle import Lifecycle
from ..limits import Settlement
from ..pipeline import Spend
from ..storage import StoredEvent
from ..storage.recorder import Recorder
from ..telemetry.stream import StreamTelemetry
from .live import LiveRun
from .relay import RelayPublisher

log = logging.getLogger(__name__)

# Room for a burst of summary tokens while the consumers catch up.
EVENT_BUFFER = 32
# The longest a run's last write may hold its end once the run is over (or cancelled).
FINAL_WRITE_BOUND_S = 10.0

Producer = Callable[[trio.MemorySendChannel[Event]], Awaitable[None]]
Encode = Callable[[Event], tuple[int, str, str]]


@dataclass
class RunDriver:
    produce: Producer
    live: LiveRun
    encode: Encode
    lifecycle: Lifecycle
    log_context: dict[str, str]
    telemetry: StreamTelemetry | None = None
    recorder: Recorder | None = None
    settlement: Settlement | None = None
    # The frames, to Redis, for followers on other instances.
    relay: RelayPublisher | None = None
    # Where the settlement runs, off the response's path (the server's nursery); None: here.
    background: trio.Nursery | None = None
    # Called once the run is over and recorded: it is no longer live on this instance.
    on_end: Callable[[], None] | None = None
    # What the producer's calls have used, for an end the driver writes itself (cancelled,
    # shut down, crashed): the calls it paid for count in the ledger and the settlement.
    spend: Spend | None = None

    def __post_init__(self) -> None:
        self._stop = trio.CancelScope()
        # Set by `cancel`: the run ends saying its user stopped it, not that its client left.
        self._stopped_by_user = False
        # Set once the terminal event went out: what follows it is dropped.
        self._ended = False

    def cancel(self) -> None:
        """Stop the run, as a hang-up would (POST /api/messages/{id}/cancel): it ends with
        `cancelled`, and every upstream call is closed."""
        self._stopped_by_user = True
        self._stop.cancel()

    async def run(self) -> None:
        if self.telemetry is not None:
            self.telemetry.start()
        try:
            with self._stop:
                await self._drive()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_BOUND_S):
                await self._end(cancelled=not self._ended)

    async def _drive(self) -> None:
        async with trio.open_nursery() as run_nursery:
            if self.recorder is not None:
                run_nursery.start_soon(self.recorder.write_in_background)
            if self.settlement is not None:
                run_nursery.start_soon(self.settlement.keep_lease)
            if self.relay is not None:
                run_nursery.start_soon(self.relay.send_in_background)
            send, receive = trio.open_memory_channel[Event](EVENT_BUFFER)
            run_nursery.start_soon(self._produce_safely, send, name="pipeline")
            async with receive:
                async for first in receive:
                    if self._ended:
                        continue  # nothing is sent after the terminal event
                    # Events already waiting (a burst of tokens) reach the readers at once:
                    # they leave in one write, not a socket send per event.
                    event: Event | None = first
                    while event is not None and not self._ended:
                        self._consume(event)
                        self._ended = isinstance(event, TERMINAL_EVENTS)
                        event = _waiting(receive)
                    if self._ended:
                        # Stored before anyone sees the end: a client that has `done` finds
                        # the message finished.
                        await self._record()
                        self.live.finish()
                    else:
                        self.live.publish()
                    if self.relay is not None:
                        self.relay.flush()
            # The events are over: so are the helpers (the relay, the lease, the recorder's
            # background writes), which `_end` finishes. A run driven by its response was
            # cancelled with it anyway; one that goes on without its client
            # (`on_disconnect: "continue"`) otherwise waited on them for ever, holding its
            # stream slot, its place in `live` and the process's shutdown.
            run_nursery.cancel_scope.cancel()

    def _consume(self, event: Event) -> None:
        if self.telemetry is not None:
            self.telemetry.observe(event)
        if self.settlement is not None:
            self.settlement.observe(event)
        event_id, event_type, data = self.encode(event)
        if self.recorder is not None:
            # As sent: a lone surrogate became "?" on the wire, and a database stores text.
            sent = data.encode("utf-8", "replace").decode("utf-8")
            self.recorder.observe(event, StoredEvent(event_id, event_type, sent))
        self.live.append((event_id, event_type, data))
        if self.relay is not None:
            self.relay.add(event_id, event_type, data)

    async def _record(self) -> None:
        """The run's last write: every phase not written yet, and its end. Shielded and
        bounded: a client that leaves now must not leave the message `running`."""
        if self.recorder is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_BOUND_S):
            await self.recorder.close()

    async def _end(self, *, cancelled: bool) -> None:
        """Whatever ended the run: its terminal event if it had none, the last write."""
        if cancelled:
            # Nobody asked for this end but those who follow the run (a join, the record).
            cancelled_by = RunCancelled(
                RunCancelled.stopped_message if self._stopped_by_user else None
            )
            final = self._failed(PublicError.of(cancelled_by))
            if self.settlement is not None:
                self.settlement.observe(final)
            event_id, event_type, data = self.encode(final)
            if self.recorder is not None:
                self.recorder.observe(final, StoredEvent(event_id, event_type, data))
            self.live.append((event_id, event_type, data))
            if self.relay is not None:
                self.relay.add(event_id, event_type, data)
        self.live.finish()
        if self.telemetry is not None:
            self.telemetry.finish(disconnected=cancelled)
        try:
            if self.settlement is not None:
                if self.background is not None:
                    self.background.start_soon(self.settlement.close)
                else:
                    await self.settlement.close()
            await self._record()
            if self.relay is not None:
                await self.relay.close()
        finally:
            if self.on_end is not None:
                self.on_end()

    async def _produce_safely(self, events: trio.MemorySendChannel[Event]) -> None:
        """Run the producer; make sure it ends with `done` or `error` whatever happens."""
        if self.telemetry is not None:
            # This task and every task it starts (agents, summary) see the request span.
            otel_context.attach(trace.set_span_in_context(self.telemetry.span))
        async with events:
            shutdown_scope = trio.CancelScope()
            self.lifecycle.track(shutdown_scope)
            failure: ServiceError | None = None
            try:
                with shutdown_scope:
                    await self.produce(events.clone())
            except Exception as exc:
                log.exception("the pipeline crashed", extra=self.log_context)
                failure = ServiceError()
                failure.__cause__ = exc
            finally:
                self.lifecycle.untrack(shutdown_scope)
            if shutdown_scope.cancelled_caught:
                log.warning("stream ended by shutdown", extra=self.log_context)
                failure = ShuttingDown()
            if failure is not None:
                await events.send(self._failed(PublicError.of(failure)))

    def _failed(self, error: PublicError) -> Failed:
        """The end the driver writes itself, with what the run's calls used until then."""
        if self.spend is None:
            return Failed(source="server", error=error)
        return self.spend.failed("server", error)


def _waiting(receive: trio.MemoryReceiveChannel[Event]) -> Event | None:
    try:
        return receive.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel):
        return None
