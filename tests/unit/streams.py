"""A response body that drives its own run, as POST /api/process builds it, for unit tests.

async with driven_body(produce) as stream:
    async for chunk in stream: ...
"""

from __future__ import annotations

from service.api.writers.event_stream import EventStreamBody
from service.api.writers.sse import SseEncoder
from service.lifecycle import Lifecycle
from service.runs import LiveRun, RunDriver
from service.runs.driver import Producer
from service.telemetry.stream import StreamTelemetry


def driven_body(
    produce: Producer,
    lifecycle: Lifecycle | None = None,
    telemetry: StreamTelemetry | None = None,
) -> EventStreamBody:
    live = LiveRun(retain=False)
    driver = RunDriver(
        produce=produce,
        live=live,
        encode=SseEncoder(message_id="m", conversation_id=None).encode_parts,
        lifecycle=lifecycle or Lifecycle(),
        log_context={"message_id": "m"},
        telemetry=telemetry,
    )
    return EventStreamBody(live, keepalive_s=15, deadline_s=120, drive=driver.run)
