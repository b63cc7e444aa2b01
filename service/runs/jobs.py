"""Work the server does in the background for a caller (an evaluation), apart from any one
response: what stops it, and its progress for whoever follows it.

A job's progress is a frame source like a live run's (live.py), read by the same response
body, but coalesced: a reader gets the newest state, not every step that led to it, and
then the job's last frame, once.

    job = Job(Progress("eval.progress"))
    jobs.add(principal, "ev_1", job)
    job.progress.update('{"done": 3}')            # readers wake with this state
    job.progress.end("eval.ended", '{"status": "completed"}')
    parts = await job.progress.frames_after(0)    # [(2, "eval.ended", ...)]; [] after it
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ..principal import Principal
from .live import Part


class Progress:
    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._frame: Part | None = None
        self._changed = trio.Event()
        self.ended = False

    def update(self, data: str) -> None:
        """The job's state now (JSON): readers that have not seen it get it next."""
        if self.ended:
            return
        self._next(self._kind, data)

    def end(self, kind: str, data: str) -> None:
        """The job's last frame; readers get it, then the end of the stream."""
        if self.ended:
            return
        self._next(kind, data)
        self.ended = True

    def _next(self, kind: str, data: str) -> None:
        number = self._frame[0] + 1 if self._frame is not None else 1
        self._frame = (number, kind, data)
        self._changed.set()
        self._changed = trio.Event()

    async def frames_after(self, after: int) -> Sequence[Part]:
        """The newest frame if its id is above `after`, waiting for one; [] once the
        reader has the last."""
        while self._frame is None or self._frame[0] <= after:
            if self.ended:
                return []
            await self._changed.wait()
        return [self._frame]


@dataclass(eq=False)
class Job:
    progress: Progress
    # Cancelled to stop the job: by its owner, or when the server drains.
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    # Set when its owner stopped it (a stop by the server leaves it False).
    stopped_by_owner: bool = False
    # Set once the job has written its end.
    finished: trio.Event = field(default_factory=trio.Event)

    def stop(self) -> None:
        self.stopped_by_owner = True
        self.scope.cancel()


class Jobs:
    """The jobs running on this instance, by owner (tenant and user) and id."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str, str], Job] = {}

    def add(self, principal: Principal, job_id: str, job: Job) -> None:
        self._jobs[(principal.tenant, principal.user, job_id)] = job

    def get(self, principal: Principal, job_id: str) -> Job | None:
        return self._jobs.get((principal.tenant, principal.user, job_id))

    def remove(self, principal: Principal, job_id: str, job: Job) -> None:
        """Forget `job`, unless the id names another by now (a resume started it again)."""
        key = (principal.tenant, principal.user, job_id)
        if self._jobs.get(key) is job:
            del self._jobs[key]

    def __len__(self) -> int:
        return len(self._jobs)
