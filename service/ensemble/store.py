"""The ensembles in use, swapped atomically when their files change or on SIGHUP.

A request reads `store.current` once when it starts and keeps that version to its end, so a
reload never changes a request in flight. An edit that does not load keeps the running
version; the problem is logged and kept in `store.problem` (shown at GET /admin/ensemble):

    store = EnsembleStore(load)              # load() -> LoadedEnsembles; raises EnsembleError
    nursery.start_soon(store.watch, 1.0)     # poll the files once a second
    await store.reload("SIGHUP")             # or force a reload
    version = store.current                  # pin this for one request
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from .loader import EnsembleError, LoadedEnsembles

log = logging.getLogger(__name__)

# What tells a file changed without reading it: mtime, size, inode (a replaced file, such as
# a Kubernetes ConfigMap swapping a symlink, keeps mtime and size but not its inode).
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class LoadProblem:
    """Why the latest reload was refused; the running version stayed."""

    message: str
    at: datetime


def fingerprint(source: Path, files: list[Path]) -> Fingerprint:
    paths = set(files)
    if source.is_dir():
        # A file added to the directory is a new ensemble.
        paths |= set(source.glob("*.toml"))
    seen = []
    for path in sorted(paths):
        try:
            stat = os.stat(path)
        except OSError:
            seen.append((str(path), -1, -1, -1))
            continue
        seen.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(seen)


class EnsembleStore:
    def __init__(self, load: Callable[[], LoadedEnsembles]) -> None:
        """Load once now; raises EnsembleError (or SettingsError) if the first load fails."""
        self._load = load
        self.current = load()
        self.problem: LoadProblem | None = None
        self._lock = trio.Lock()
        self._seen = self._fingerprint()
        # Set (and replaced) at every swap, so waiters wake once per new version.
        self._swapped = trio.Event()

    def _fingerprint(self) -> Fingerprint:
        return fingerprint(self.current.source, list(self.current.files))

    async def reload(self, reason: str) -> bool:
        """Load the files again; swap them in if they load. True when a new version is in use."""
        async with self._lock:
            self._seen = await trio.to_thread.run_sync(self._fingerprint)
            try:
                loaded = await trio.to_thread.run_sync(self._load)
            except Exception as exc:
                # Whatever went wrong, the running version keeps serving.
                self.problem = LoadProblem(message=str(exc), at=datetime.now(UTC))
                log.error(
                    "ensemble reload (%s) refused; still using version %s: %s",
                    reason,
                    self.current.version,
                    exc,
                    exc_info=None if isinstance(exc, EnsembleError) else exc,
                    extra={"ensemble_version": self.current.version},
                )
                return False
            self.problem = None
            if loaded.version == self.current.version:
                log.info("ensemble reload (%s): version %s unchanged", reason, loaded.version)
                return False
            previous, self.current = self.current, loaded
            self._swapped.set()
            self._swapped = trio.Event()
            # Files the new version reads (a new prompt file) are watched from now on.
            self._seen = await trio.to_thread.run_sync(self._fingerprint)
            log.info(
                "ensemble reload (%s): version %s replaces %s",
                reason,
                loaded.version,
                previous.version,
                extra={"ensemble_version": loaded.version},
            )
            return True

    async def next_version(self) -> LoadedEnsembles:
        """Wait for the next version to be swapped in, and return it."""
        await self._swapped.wait()
        return self.current

    async def watch(self, interval_s: float) -> None:
        """Reload whenever a watched file changes; checks every `interval_s` seconds."""
        while True:
            await trio.sleep(interval_s)
            now = await trio.to_thread.run_sync(self._fingerprint)
            if now != self._seen:
                await self.reload("file changed")
