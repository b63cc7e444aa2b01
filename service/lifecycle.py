"""Readiness and graceful shutdown, shared by the server loop and every open stream.

lifecycle = Lifecycle()
lifecycle.begin_draining()   # SIGTERM: /readyz turns 503, new streams are refused, and
                             # background jobs (evaluations) stop, to be resumed
lifecycle.end_grace()        # grace is over: every open stream is cancelled and ends
                             # with an `error` event (code shutting_down)
"""

from __future__ import annotations

import trio


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False
        self.grace_over = False
        self._streams: set[trio.CancelScope] = set()
        self._jobs: set[trio.CancelScope] = set()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def begin_draining(self) -> None:
        self.draining = True
        for scope in self._jobs:
            scope.cancel()

    def end_grace(self) -> None:
        self.grace_over = True
        for scope in self._streams:
            scope.cancel()

    def track(self, scope: trio.CancelScope) -> None:
        """Cancel `scope` when the grace period ends (at once if it already has)."""
        self._streams.add(scope)
        if self.grace_over:
            scope.cancel()

    def untrack(self, scope: trio.CancelScope) -> None:
        self._streams.discard(scope)

    def track_job(self, scope: trio.CancelScope) -> None:
        """Cancel a background job's `scope` when draining begins (at once if it has): it
        is not worth the grace, and can be resumed."""
        self._jobs.add(scope)
        if self.draining:
            scope.cancel()

    def untrack_job(self, scope: trio.CancelScope) -> None:
        self._jobs.discard(scope)
