"""What an instance does for the database while it serves: a heartbeat, so that other
instances can tell it is alive; writing its runs' phases that were given up while the
database was away; taking over the running messages (and evaluations) of instances that
are not; and deleting conversations and evaluations past RETENTION_DAYS.

    nursery.start_soon(keep_house, store, 5.0, 30.0)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import trio

from .store import StorageUnavailable, Store

log = logging.getLogger(__name__)

# An instance whose heartbeat is this many beats old is taken for gone.
MISSED_BEATS = 3
RETENTION_EVERY_S = 3600.0


def heartbeat_expiry(heartbeat_s: float) -> timedelta:
    return timedelta(seconds=heartbeat_s * MISSED_BEATS)


async def keep_house(store: Store, heartbeat_s: float, retention_days: float | None) -> None:
    """Run until cancelled; a database that fails is logged and tried again next beat.

    Other instances are judged by their heartbeats only once this one has reached the
    database for a whole expiry: while it was away, no instance could beat, and each gets
    that long to beat again before its running messages (and evaluations) are taken for a
    dead one's."""
    expiry = heartbeat_expiry(heartbeat_s)
    next_retention = trio.current_time()
    # When this instance last began reaching the database (its start had just reached it).
    reachable_since: float | None = trio.current_time()
    while True:
        try:
            await store.heartbeat()
            await store.write_unwritten()
            if reachable_since is None:
                reachable_since = trio.current_time()
            if trio.current_time() - reachable_since >= expiry.total_seconds():
                interrupted = await store.mark_interrupted(expiry=expiry, starting=False)
                if interrupted:
                    log.warning(
                        "%d message(s) of a stopped instance marked interrupted", interrupted
                    )
                stopped = await store.mark_evaluations_interrupted(expiry=expiry, starting=False)
                if stopped:
                    log.warning(
                        "%d evaluation(s) of a stopped instance marked interrupted", stopped
                    )
            if retention_days is not None and trio.current_time() >= next_retention:
                next_retention = trio.current_time() + RETENTION_EVERY_S
                cutoff = datetime.now(UTC) - timedelta(days=retention_days)
                deleted = await store.delete_expired(older_than=cutoff)
                if deleted:
                    log.info(
                        "deleted %d conversation(s) older than %g days", deleted, retention_days
                    )
                ended = await store.delete_expired_evaluations(older_than=cutoff)
                if ended:
                    log.info(
                        "deleted %d evaluation(s) ended over %g days ago", ended, retention_days
                    )
        except StorageUnavailable:
            reachable_since = None
            log.warning("housekeeping could not reach the database", exc_info=True)
        await trio.sleep(heartbeat_s)
