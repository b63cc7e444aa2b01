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
    kinds = [e.event for e in alpha]
    # The retry's answer streams; the failed call sent no text, so nothing is restarted.
    assert kinds[:2] == ["agent.started", "agent.retrying"]
    assert kinds[-1] == "agent.completed"
    assert set(kinds[2:-1]) == {"agent.delta"}
    deltas = [e.data for e in alpha if e.event == "agent.delta"]
    assert {d["attempt"] for d in deltas} == {2}
    assert "".join(d["message"] for d in deltas) == alpha[-1].data["message"]
    retrying = alpha[1].data
    assert retrying["status"] == "Retrying alpha (attempt 2)"
    assert retrying["attempt"] == 2
    assert retrying["model"] == "fake-a"
    assert retrying["error"]["code"] == "upstream_unavailable"
    assert retrying["delay_ms"] > 0
    assert alpha[-1].data["attempts"] == 2
