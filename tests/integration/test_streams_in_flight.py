"""`fanout_streams_in_flight` on GET /metrics counts the event streams open at that moment.

Read over HTTP from the real server while the streams are held open by an agent whose
upstream never answers, so the count does not depend on how the routes assemble a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import RunningService, SseEvent, iter_events, running_service


async def in_flight(service: RunningService) -> float:
    response = await service.client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "fanout_streams_in_flight":
                return sample.value
    raise AssertionError("GET /metrics has no fanout_streams_in_flight")


async def next_event(events: AsyncIterator[SseEvent]) -> SseEvent:
    with trio.fail_after(5):
        return await anext(events)


async def test_each_open_stream_counts_in_flight_until_its_client_leaves(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream({"fake-stuck": Behaviour(stall=True)})
    async with running_service(tmp_path, fake, agents={"alpha": "fake-stuck"}) as service:
        before = await in_flight(service)
        seen: list[float] = []
        body = {"message": "Why is the sky blue?", "message_id": "in-flight-1"}
        # Each reader is kept until its stream is left: a dropped one closes the response.
        async with service.client.stream("POST", "/api/process", json=body) as first:
            first_events = iter_events(first)
            assert (await next_event(first_events)).event == "agent.started"
            seen.append(await in_flight(service))
            body = {**body, "message_id": "in-flight-2"}
            async with service.client.stream("POST", "/api/process", json=body) as second:
                second_events = iter_events(second)
                assert (await next_event(second_events)).event == "agent.started"
                seen.append(await in_flight(service))
        assert seen == [before + 1, before + 2]

        # Lowered as the server sees each client leave, a moment after the client closed.
        with trio.fail_after(5):
            while await in_flight(service) != before:  # noqa: ASYNC110
                await trio.sleep(0.01)
