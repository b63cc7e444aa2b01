"""What a running service holds: its tasks, open connections and streams, polled back to a
baseline after a client has done its worst.

    baseline = Held.of(service)
    ...
    await back_to(baseline, service)
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from prometheus_client import REGISTRY

from tests.integration.harness import RunningService

# The harness runs the service under a task of this name; everything below it is the service.
SERVICE_TASK = "running_service.<locals>.serve"


def _service_task() -> trio.lowlevel.Task:
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task.name.endswith(SERVICE_TASK):
            return task
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    raise AssertionError("no running service in this trio run")


def _descendants(task: trio.lowlevel.Task) -> list[str]:
    names = []
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            names.append(child.name)
            names.extend(_descendants(child))
    return names


@dataclass(frozen=True)
class Held:
    tasks: int
    connections: float
    streams: int
    task_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, service: RunningService) -> Held:
        names = tuple(sorted(_descendants(_service_task())))
        return cls(
            tasks=len(names),
            connections=REGISTRY.get_sample_value("fanout_connections_open") or 0.0,
            streams=service.resources.lifecycle.open_streams,
            task_names=names,
        )

    def within(self, baseline: Held) -> bool:
        return (
            self.tasks <= baseline.tasks
            and self.connections <= baseline.connections
            and self.streams <= baseline.streams
        )


async def back_to(baseline: Held, service: RunningService, *, within_s: float = 5.0) -> float:
    """Wait until the service holds no more than `baseline`; return how long that took."""
    started = trio.current_time()
    with trio.move_on_after(within_s):
        while not Held.of(service).within(baseline):  # noqa: ASYNC110
            await trio.sleep(0.02)
        return trio.current_time() - started
    now = Held.of(service)
    extra = sorted(set(now.task_names) - set(baseline.task_names))
    raise AssertionError(
        f"still held after {within_s} s: {now.tasks} tasks (baseline {baseline.tasks}), "
        f"{now.connections} connections ({baseline.connections}), {now.streams} streams "
        f"({baseline.streams}); tasks not in the baseline: {extra}"
    )
