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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from .loader import EnsembleError, LoadedEnsembles, ensemble_files

log = logging.getLogger(__name__)

# What tells a file changed without reading it: mtime, size, inode (a replaced file, such as
# a Kubernetes ConfigMap swapping a symlink, keeps mtime and size but not its inode).
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class LoadProblem:
    """Why the latest reload was refused; the running version stayed."""

    message: str
    at: datetime


def fingerprint(source: Path, files: Iterable[Path]) -> Fingerprint:
    """Never raises: a file that cannot be looked at counts as changed when that changes."""
    paths = set(files)
    try:
        if os.path.isdir(source):
            # A file added to the directory is a new ensemble.
            paths |= set(ensemble_files(source))
    except OSError:
        paths.add(source)
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
        self._watched: set[Path] = set(self.current.files)
        self._seen = fingerprint(self.current.source, self._watched)
        # Set (and replaced) at every swap, so waiters wake once per new version.
        self._swapped = trio.Event()

    async def _fingerprint(self) -> Fingerprint:
        watched = set(self._watched)
        return await trio.to_thread.run_sync(fingerprint, self.current.source, watched)

    async def reload(self, reason: str) -> bool:
        """Load the files again; swap them in if they load. True when a new version is in use.

        Never raises (but for cancellation): whatever goes wrong, the running version stays.
        """
        async with self._lock:
            before = await self._fingerprint()
            try:
                # A load stuck on a file (a hung network mount) must not hold up shutdown.
                loaded = await trio.to_thread.run_sync(self._load, abandon_on_cancel=True)
            except Exception as exc:
                # Watch what the refused edit tried to read, too (a prompt file not yet
                # written), so writing it retries the load. A file it found missing is
                # remembered as missing, whatever has appeared since.
                attempted: dict[Path, str] = getattr(exc, "files", {})
                self._watched |= set(attempted)
                missing = {str(path) for path, text in attempted.items() if not text}
                seen = await self._fingerprint()
                self._seen = tuple(
                    (entry[0], -1, -1, -1) if entry[0] in missing else entry for entry in seen
                )
                # Published last: whoever reacts to the problem acts after the snapshot.
                self._refused(reason, exc)
                return False
            self.problem = None
            self._watched = set(loaded.files)
            after = await self._fingerprint()
            common = {entry[0] for entry in before} & {entry[0] for entry in after}
            if [e for e in before if e[0] in common] != [e for e in after if e[0] in common]:
                # A file changed while it was being read: look again at the next poll.
                self._seen = ()
            else:
                self._seen = after
            if loaded.version == self.current.version:
                log.info("ensemble reload (%s): version %s unchanged", reason, loaded.version)
                return False
            previous, self.current = self.current, loaded
            self._swapped.set()
            self._swapped = trio.Event()
            log.info(
                "ensemble reload (%s): version %s replaces %s",
                reason,
                loaded.version,
                previous.version,
                extra={"ensemble_version": loaded.version},
            )
            return True

    def _refused(self, reason: str, exc: Exception) -> None:
        self.problem = LoadProblem(message=str(exc), at=datetime.now(UTC))
        log.error(
            "ensemble reload (%s) refused; still using version %s: %s",
            reason,
            self.current.version,
            exc,
            exc_info=None if isinstance(exc, EnsembleError) else exc,
            extra={"ensemble_version": self.current.version},
        )

    async def next_version(self) -> LoadedEnsembles:
        """Wait for the next version to be swapped in, and return it."""
        await self._swapped.wait()
        return self.current

    async def watch(self, interval_s: float) -> None:
        """Reload whenever a watched file changes; checks every `interval_s` seconds."""
        while True:
            await trio.sleep(interval_s)
            if await self._fingerprint() != self._seen:
                await self.reload("file changed")
