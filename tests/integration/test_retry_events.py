"""A client sees an agent retry as it happens: `agent.retrying`, with the attempt to come."""

from __future__ import annotations

from pathlib import Path

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import read_events, running_service


async def test_a_retry_is_an_event_before_the_answer(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(status=503, fail_first=1)})
    async with running_service(tmp_path, fake) as service:
        body = {"message": "Hi?", "message_id": "m-1"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = await read_events(response)
    alpha = [e for e in events if e.data["source"] == "alpha"]
    assert [e.event for e in alpha] == ["agent.started", "agent.retrying", "agent.completed"]
    retrying = alpha[1].data
    assert retrying["status"] == "Retrying alpha (attempt 2)"
    assert retrying["attempt"] == 2
    assert retrying["model"] == "fake-a"
    assert retrying["error"]["code"] == "upstream_unavailable"
    assert retrying["delay_ms"] > 0
    assert alpha[2].data["attempts"] == 2
