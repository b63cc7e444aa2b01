"""The events of a run as it produces them, for every response that follows it.

A run appends each event, encoded once as a `Part` (its id, type and JSON data, the form
that is stored and relayed too); a response asks for the parts after the last id it sent,
waits when there are none yet, and presents them in its own format (our SSE, or OpenAI's
chunks). With storage on, the parts are kept until the run ends, so a second request for the
same message (a join, a resume) can start from any id; without it, a run has exactly one
reader, and parts are let go once it has read them.

    live = LiveRun(retain=True)
    live.append((1, "agent.started", '{...}'))   # the run, event by event,
    live.publish()                               # and once per burst of events
    parts = await live.frames_after(0)           # a response: [] once the run has ended
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..principal import Principal

# An encoded event: (id, type, data), data its JSON exactly as it is sent.
Part = tuple[int, str, str]


class FrameSource(Protocol):
    """Where a response reads a run's frames: a live run, a stored one, a relayed one."""

    async def frames_after(self, after: int) -> Sequence[Part]:
        """The events with ids above `after`, waiting until there is one; [] at the end."""
        ...


class LiveRun:
    def __init__(self, *, retain: bool) -> None:
        self._retain = retain
        self._frames: list[Part] = []
        self._first_id = 1  # the event id of _frames[0]
        # How many of _frames readers may have: those appended before the last `publish` or
        # `finish`. A terminal frame is appended, then stored, then finished; a reader that
        # wakes in between (for an earlier publish) must not send it before it is stored.
        self._published = 0
        self._changed = trio.Event()
        self.finished = False

    @property
    def last_id(self) -> int:
        return self._first_id + len(self._frames) - 1

    def append(self, frame: Part) -> None:
        """Add a frame; readers see it at the next `publish` (a burst wakes them once)."""
        self._frames.append(frame)

    def publish(self) -> None:
        self._published = len(self._frames)
        self._wake()

    def finish(self) -> None:
        """No more frames will come: readers drain what is left, then get []."""
        self.finished = True
        self._published = len(self._frames)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def frames_after(self, after: int) -> Sequence[Part]:
        """The frames with an id above `after`, waiting for one if there is none yet;
        [] when the run has ended and the reader has them all."""
        while after >= self._first_id + self._published - 1 and not self.finished:
            await self._changed.wait()
        start = max(after + 1 - self._first_id, 0)
        frames = self._frames[start : self._published]
        if not self._retain:
            # The one reader has these now.
            self._first_id += self._published
            del self._frames[: self._published]
            self._published = 0
        return frames


class LiveRuns:
    """The runs in progress on this instance, by owner (tenant and user), message id and
    version (a message id sent again with other text runs as its next version, maybe while
    the one before still runs), each with what stops it."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str, str, int], tuple[LiveRun, Callable[[], None]]] = {}

    def add(
        self,
        principal: Principal,
        message_id: str,
        version: int,
        run: LiveRun,
        cancel: Callable[[], None],
    ) -> None:
        self._runs[(principal.tenant, principal.user, message_id, version)] = (run, cancel)

    def get(self, principal: Principal, message_id: str, version: int) -> LiveRun | None:
        found = self._runs.get((principal.tenant, principal.user, message_id, version))
        return found[0] if found is not None else None

    def cancel(self, principal: Principal, message_id: str, version: int) -> bool:
        """Cancel the run (it ends with `cancelled`); False if it is not running here. A run
        whose terminal event is out is over, though it may still be unwinding: not running."""
        found = self._runs.get((principal.tenant, principal.user, message_id, version))
        if found is None or found[0].finished:
            return False
        found[1]()
        return True

    def remove(self, principal: Principal, message_id: str, version: int) -> None:
        self._runs.pop((principal.tenant, principal.user, message_id, version), None)

    def __len__(self) -> int:
        return len(self._runs)
