"""LiveRun hands readers only what the run has published: a frame appended but not yet
published (the terminal one, while it is being stored) waits for `publish` or `finish`."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from service.runs import LiveRun


@pytest.mark.parametrize("retain", [True, False])
async def test_an_appended_frame_reaches_no_reader_before_it_is_published(
    autojump_clock: MockClock, retain: bool
) -> None:
    live = LiveRun(retain=retain)
    live.append((1, "agent.started", "{}"))
    live.publish()
    assert [part[0] for part in await live.frames_after(0)] == [1]

    # The run appends its terminal frame, then stores the message, then finishes. A reader
    # woken in that gap (by the earlier publish, say) must not be handed the terminal frame.
    live.append((2, "done", "{}"))
    seen: list[list[int]] = []

    async def reader() -> None:
        seen.append([part[0] for part in await live.frames_after(1)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        assert seen == []  # still waiting: frame 2 is not published
        live.finish()
    assert seen == [[2]]
    assert await live.frames_after(2) == []


async def test_a_retaining_run_gives_a_late_reader_everything_published() -> None:
    live = LiveRun(retain=True)
    for number in (1, 2, 3):
        live.append((number, "summary.delta", "{}"))
    live.publish()
    live.append((4, "done", "{}"))
    assert [part[0] for part in await live.frames_after(0)] == [1, 2, 3]
    live.finish()
    assert [part[0] for part in await live.frames_after(0)] == [1, 2, 3, 4]
    assert [part[0] for part in await live.frames_after(3)] == [4]
