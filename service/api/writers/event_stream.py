"""A Quart response body that sends a run's frames: a run it drives itself, a live run it
joins, or a stored run it replays.

Quart enters the body, iterates it and leaves it in the one task that writes the response.
A body that drives its run opens the run's nursery in `__aenter__` and closes it in
`__aexit__`, so no cancel scope ever crosses a `yield`, and a client that hangs up (Quart-
Trio cancels that task) cancels the run, every agent and the summarizer with it. A body
that only follows a run leaves it alone when its client goes.

    body = EventStreamBody(live, keepalive_s=15, deadline_s=120, drive=driver.run)
    body = EventStreamBody(live, ..., present=chunks.present)    # OpenAI's format
    body = EventStreamBody(StoredFrames(store, principal, "m-1"), keepalive_s=15, ...)
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType

import trio
from quart.wrappers.response import ResponseBody

from ...connections.record import current_connection
from ...runs.live import FrameSource
from .sse import KEEPALIVE, frame

# After the stream's deadline, the time its last event has to reach a client whose socket
# is full; then the connection is closed (a client that stopped reading holds nothing).
FINAL_WRITE_S = 2.0


# Bytes for the client from one event: our SSE frame, or OpenAI's chunks.
Presenter = Callable[[int, str, str], bytes]


class EventStreamBody(ResponseBody):
    def __init__(
        self,
        frames: FrameSource,
        *,
        keepalive_s: float,
        deadline_s: float,
        present: Presenter = frame,
        after: int = 0,
        drive: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._frames = frames
        self._present = present
        self._keepalive_s = keepalive_s
        self._deadline_s = deadline_s
        self._after = after
        self._drive = drive
        self._ended = False
        self._nursery_manager = trio.open_nursery() if drive is not None else None
        self._cancel_scope: trio.CancelScope | None = None

    async def __aenter__(self) -> EventStreamBody:
        connection = current_connection()
        if connection is not None:
            connection.write_deadline = trio.current_time() + self._deadline_s + FINAL_WRITE_S
        if self._nursery_manager is not None and self._drive is not None:
            nursery = await self._nursery_manager.__aenter__()
            nursery.start_soon(self._drive, name="run")
            self._cancel_scope = nursery.cancel_scope
        return self

    async def __aexit__(  # type: ignore[override]  # the nursery may swallow its own Cancelled
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        try:
            if self._nursery_manager is None or self._cancel_scope is None:
                return None
            self._cancel_scope.cancel()
            return await self._nursery_manager.__aexit__(exc_type, exc_value, traceback)
        finally:
            connection = current_connection()
            if connection is not None:
                connection.write_deadline = math.inf

    def __aiter__(self) -> EventStreamBody:
        return self

    async def __anext__(self) -> bytes:
        if self._ended:
            raise StopAsyncIteration
        with trio.move_on_after(self._keepalive_s):
            # Frames that are already waiting (a burst of tokens) leave in the same write: a
            # socket send per event was a quarter of the service's CPU at saturation.
            frames = await self._frames.frames_after(self._after)
            if not frames:
                self._ended = True
                raise StopAsyncIteration
            self._after = frames[-1][0]  # ids rise, not always by one (validation.MAX_EVENT_ID)
            present = self._present
            return b"".join([present(*part) for part in frames])
        return KEEPALIVE
