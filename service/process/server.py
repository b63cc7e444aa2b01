"""Run the app on Hypercorn's trio worker: graceful shutdown on SIGTERM / SIGINT, ensemble
reload on SIGHUP and whenever its files change. As one of WORKERS processes it accepts on the
socket its parent bound and tells the parent when it serves.

trio.run(run_server, settings)                                    # python -m service
binds = await nursery.start(serve_app, resources, shutdown_event)  # tests: bound URLs
"""

from __future__ import annotations

import logging
import os
import signal

import trio
from hypercorn.trio import serve

from ..app import create_app
from ..connections import ServiceConfig, use_guarded_connections
from ..resources import Resources, open_resources
from ..settings import Settings
from ..storage import keep_house
from ..telemetry.metrics import worker_exiting
from ..telemetry.tracing import shutdown_tracing
from .gc_tuning import tune_for_serving

log = logging.getLogger("service.server")  # the name operators filter on

# Time after the grace period for the final `error` events to reach the clients.
FLUSH_MARGIN_S = 2.0
# After this much more, a connection that still has not closed (a client that stopped
# reading: its writes are bounded by SEND_TIMEOUT_S, longer than this) no longer holds the exit.
HARD_STOP_AFTER_S = 3.0


def hypercorn_config(settings: Settings) -> ServiceConfig:
    config = ServiceConfig()
    if settings.fanout_listen_fd is not None:
        # A worker of WORKERS > 1: accept on the socket its parent bound, shared by all.
        config.bind = [f"fd://{settings.fanout_listen_fd}"]
    else:
        config.bind = [settings.http_addr.for_hypercorn()]
    config.backlog = settings.listen_backlog
    config.graceful_timeout = settings.shutdown_grace_s + FLUSH_MARGIN_S
    config.errorlog = logging.getLogger("hypercorn.error")
    config.send_timeout_s = settings.send_timeout_s
    return config


async def serve_app(
    resources: Resources,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown` is set, then drain: refuse new streams, let open ones finish
    for SHUTDOWN_GRACE_S, end the rest with `shutting_down`, and return."""
    settings = resources.settings
    lifecycle = resources.lifecycle

    async def drain_when_asked() -> None:
        await shutdown.wait()
        lifecycle.begin_draining()
        log.info(
            "shutting down: %d open stream(s), %g s grace",
            lifecycle.open_streams,
            settings.shutdown_grace_s,
        )

    async def end_grace_when_due() -> None:
        await shutdown.wait()
        await trio.sleep(settings.shutdown_grace_s)
        lifecycle.end_grace()

    async with trio.open_nursery() as shutdown_nursery:
        shutdown_nursery.start_soon(end_grace_when_due)
        if settings.ensemble_reload_s > 0:
            shutdown_nursery.start_soon(resources.ensembles.watch, settings.ensemble_reload_s)
        if resources.store is not None:
            shutdown_nursery.start_soon(
                keep_house, resources.store, settings.heartbeat_s, settings.retention_days
            )
        if resources.authenticator.tokens is not None:
            shutdown_nursery.start_soon(resources.authenticator.tokens.keep_fresh)
        resources.authenticator.background = shutdown_nursery
        # Runs that go on without their client: they get the same grace as open streams,
        # and end with `shutting_down` after it (end_grace_when_due is still waiting).
        async with trio.open_nursery() as runs_nursery:
            resources.runs = runs_nursery
            use_guarded_connections()
            await serve(
                create_app(resources),
                hypercorn_config(settings),
                shutdown_trigger=drain_when_asked,
                task_status=task_status,
            )
            resources.runs = None
        shutdown_nursery.cancel_scope.cancel()


async def _signals_to_shutdown(shutdown: trio.Event, lifecycle_end_grace: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                log.info("received %s", signal.Signals(signum).name)
                shutdown.set()
            else:
                # A second signal: the operator does not want to wait for the grace period.
                lifecycle_end_grace.set()


async def _reload_on_sighup(resources: Resources) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            await resources.ensembles.reload("SIGHUP")


async def _hard_stop_when_overdue(shutdown: trio.Event, settings: Settings) -> None:
    await shutdown.wait()
    await trio.sleep(settings.shutdown_grace_s + FLUSH_MARGIN_S + HARD_STOP_AFTER_S)
    log.warning("connections still open after the grace period; exiting anyway")
    logging.shutdown()
    os._exit(0)


async def _stay_with_parent(parent_fd: int, shutdown: trio.Event) -> None:
    """In a worker of WORKERS > 1, once serving: tell the parent, then shut down if the
    parent dies (its end of the socket pair closes), so no orphan keeps the port."""
    async with trio.lowlevel.FdStream(parent_fd) as parent:
        try:
            await parent.send_all(b"ready\n")
            while await parent.receive_some():  # the parent never writes; b"" means it is gone
                pass
        except trio.BrokenResourceError:
            pass
    if not shutdown.is_set():
        log.warning("the parent process is gone; shutting down")
        shutdown.set()


async def run_server(settings: Settings) -> None:
    shutdown = trio.Event()
    hurry = trio.Event()
    async with open_resources(settings) as resources, trio.open_nursery() as signal_nursery:
        tune_for_serving()
        signal_nursery.start_soon(_signals_to_shutdown, shutdown, hurry)
        signal_nursery.start_soon(_hard_stop_when_overdue, shutdown, settings)
        signal_nursery.start_soon(_reload_on_sighup, resources)

        async def end_grace_on_hurry() -> None:
            await hurry.wait()
            resources.lifecycle.end_grace()

        signal_nursery.start_soon(end_grace_on_hurry)
        async with trio.open_nursery() as server_nursery:
            await server_nursery.start(serve_app, resources, shutdown)
            if settings.fanout_parent_fd is not None:
                signal_nursery.start_soon(_stay_with_parent, settings.fanout_parent_fd, shutdown)
        signal_nursery.cancel_scope.cancel()
    # Spans still batched go out now (a blocking flush, bounded by the exporter's timeout).
    shutdown_tracing()
    worker_exiting()
    log.info("stopped")
