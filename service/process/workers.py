"""WORKERS=n: this process binds the port once and runs n worker processes (`python -m
service` again) that accept on that one socket. It forwards SIGTERM / SIGINT / SIGHUP to
them and replaces a worker that dies after it started serving.

    listener = open_listener(settings.http_addr, settings.listen_backlog)
    exit_code = trio.run(Supervisor(settings, listener).run)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

import trio
from hypercorn.config import Config
from prometheus_client import multiprocess

from ..settings import BindAddress, Settings, SettingsError
from ..telemetry.metrics import multiprocess_dir

log = logging.getLogger("service.workers")

# Each worker stops itself a few seconds after SHUTDOWN_GRACE_S (server.py); one still
# running this long after the grace period is stuck outside trio and is killed.
KILL_AFTER_GRACE_S = 15.0
# Exit codes of a worker that stopped as asked: it drained (0), or the forwarded signal ended
# it before it had installed its handlers.
STOPPED_AS_ASKED = (0, -signal.SIGTERM, -signal.SIGINT)


def open_listener(address: BindAddress, backlog: int) -> socket.socket:
    """A listening socket on HTTP_ADDR, made the way Hypercorn makes its own; SettingsError,
    in one line, when HTTP_ADDR cannot be listened on."""
    config = Config()
    config.bind = [address.for_hypercorn()]
    try:
        [listener] = config.create_sockets().insecure_sockets
        listener.listen(backlog)
    except OSError as exc:
        raise SettingsError(
            f"HTTP_ADDR='{address.for_hypercorn()}': cannot listen there: {exc.strerror or exc}"
        ) from exc
    return listener


@dataclass
class Worker:
    """One worker process, as its parent knows it."""

    number: int
    process: trio.Process
    ready: bool = False
    # A SIGHUP that came while it was starting; it is passed on once the worker serves.
    reload_pending: bool = False


class Supervisor:
    """Keeps WORKERS processes serving on `listener` until SIGTERM / SIGINT.

    trio.run(Supervisor(settings, listener).run)   # the exit code: 0 after a clean stop
    """

    def __init__(self, settings: Settings, listener: socket.socket) -> None:
        self.settings = settings
        self.listener = listener
        self.workers: dict[int, Worker] = {}
        self.stop_signal: signal.Signals | None = None
        self.failed = False
        self._served_once: set[int] = set()

    async def run(self) -> int:
        async with trio.open_nursery() as signal_nursery:
            # The handlers are in place before the first worker starts: no signal is missed.
            await signal_nursery.start(self._forward_signals, signal_nursery)
            async with trio.open_nursery() as worker_nursery:
                for number in range(1, self.settings.workers + 1):
                    worker_nursery.start_soon(self._keep_worker, number)
            signal_nursery.cancel_scope.cancel()
        self.listener.close()
        log.info("stopped")
        return 1 if self.failed else 0

    async def _keep_worker(self, number: int) -> None:
        """Run worker `number` until the service stops, replacing it when it dies after it
        started serving. One that dies while starting would most likely die again on every
        restart, so that stops the service instead."""
        while self.stop_signal is None:
            parent_end, child_end = trio.socket.socketpair()
            with parent_end:
                with child_end:
                    worker = Worker(number, await self._spawn(child_end, number))
                self.workers[number] = worker
                if self.stop_signal is not None:  # it came while this one was being spawned
                    worker.process.send_signal(self.stop_signal)
                async with trio.open_nursery() as watch_nursery:
                    watch_nursery.start_soon(self._wait_until_serving, worker, parent_end)
                    code = await worker.process.wait()
                    watch_nursery.cancel_scope.cancel()
            del self.workers[number]
            if multiprocess_dir() is not None:
                # Its live gauges (streams in flight) stop counting, even when it was killed.
                multiprocess.mark_process_dead(worker.process.pid)  # type: ignore[no-untyped-call]
            what = f"worker {number} (pid {worker.process.pid})"
            if self.stop_signal is not None:
                if code not in STOPPED_AS_ASKED:
                    log.error("%s exited with code %d while stopping", what, code)
                    self.failed = True
                return
            if not worker.ready:
                log.error("%s exited with code %d while starting; stopping the service", what, code)
                self.failed = True
                self._stop(signal.SIGTERM)
                return
            log.error("%s exited unexpectedly with code %d; starting a new one", what, code)

    async def _spawn(self, parent_link: trio.socket.SocketType, number: int) -> trio.Process:
        listen_fd, parent_fd = self.listener.fileno(), parent_link.fileno()
        worker_env = {
            "WORKERS": "1",
            "FANOUT_LISTEN_FD": str(listen_fd),
            "FANOUT_PARENT_FD": str(parent_fd),
            # Its name in the database: a replacement takes over what its predecessor left.
            "FANOUT_WORKER_NUMBER": str(number),
        }
        return await trio.lowlevel.open_process(
            [sys.executable, "-m", "service"],
            env=os.environ | worker_env,
            pass_fds=(listen_fd, parent_fd),
            # A process group of its own: Ctrl-C in a terminal reaches only this process,
            # which passes it on once (a second SIGINT would cut the grace period short).
            process_group=0,
        )

    async def _wait_until_serving(self, worker: Worker, parent_end: trio.socket.SocketType) -> None:
        if not await parent_end.recv(64):  # b"": it exited before it served
            return
        worker.ready = True
        if worker.reload_pending:
            worker.process.send_signal(signal.SIGHUP)
        if worker.number not in self._served_once:
            self._served_once.add(worker.number)
            if len(self._served_once) == self.settings.workers:
                host, port = self.listener.getsockname()[:2]
                url = f"http://{BindAddress(host=host, port=port).for_hypercorn()}"
                log.info("Running on %s with %d workers", url, self.settings.workers)

    async def _forward_signals(
        self,
        signal_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    for worker in self.workers.values():
                        if worker.ready:
                            worker.process.send_signal(signal.SIGHUP)
                        else:
                            # SIGHUP would end a worker that has no handler for it yet.
                            worker.reload_pending = True
                    continue
                if self.stop_signal is None:
                    log.info("received %s; stopping the workers", signal.Signals(signum).name)
                    signal_nursery.start_soon(self._kill_when_overdue)
                # Every one is passed on: a second signal hurries the workers as it would one.
                self._stop(signal.Signals(signum))

    def _stop(self, signum: signal.Signals) -> None:
        self.stop_signal = signum
        for worker in self.workers.values():
            worker.process.send_signal(signum)

    async def _kill_when_overdue(self) -> None:
        await trio.sleep(self.settings.shutdown_grace_s + KILL_AFTER_GRACE_S)
        for worker in self.workers.values():
            log.error(
                "worker %d (pid %d) is still running; killing it", worker.number, worker.process.pid
            )
            worker.process.kill()
