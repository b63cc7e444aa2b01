"""Editing the ensemble file under a running server, over real sockets."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import iter_events, read_events, running_service

FAST_RELOAD = {"ENSEMBLE_RELOAD_S": "0.05"}


def single(prompt: str, *, timeout: str = "") -> str:
    return (
        f'[[agents]]\nname = "a"\nmodel = "fake-a"\nsystem_prompt = "{prompt}"\n{timeout}'
        '[summarizer]\nname = "combine"\nmodel = "fake-summary"\nsystem_prompt = "Combine."\n'
    )


def rewrite(path: Path, text: str) -> None:
    """Write `text` so that the change shows even within one mtime tick."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def body(message_id: str, **extra: str) -> dict[str, str]:
    return {"message": "Why is the sky blue?", "message_id": message_id, **extra}


async def test_a_request_in_flight_finishes_on_the_version_it_started_with(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="A.", first_token_delay_s=0.5),
            "fake-summary": Behaviour(tokens=("S.",)),
        }
    )
    path = tmp_path / "ensemble.toml"
    async with running_service(
        tmp_path, fake, ensemble=single("You are the first."), env=FAST_RELOAD
    ) as service:
        store = service.resources.ensembles
        first = store.current.version
        async with service.client.stream("POST", "/api/process", json=body("m-1")) as old:
            old_events = aiter(iter_events(old))
            assert (await anext(old_events)).event == "agent.started"
            rewrite(path, single("You are the second."))
            with trio.fail_after(3):
                second = (await store.next_version()).version
            async with service.client.stream("POST", "/api/process", json=body("m-2")) as new:
                new_events = await read_events(new)
            old_rest = [event async for event in old_events]

    assert second != first
    old_done, new_done = old_rest[-1].data, new_events[-1].data
    assert (old_done["type"], old_done["ensemble_version"]) == ("done", first)
    assert (new_done["type"], new_done["ensemble_version"]) == ("done", second)
    (started,) = [e.data for e in old_rest if e.event == "summary.started"]
    assert started["ensemble_version"] == first
    prompts = {c.messages[0]["content"] for c in fake.calls_for("fake-a")}
    assert prompts == {"You are the first.", "You are the second."}
    old_call, new_call = fake.calls_for("fake-a")
    assert old_call.messages[0]["content"] == "You are the first."
    assert new_call.messages[0]["content"] == "You are the second."


async def test_a_broken_edit_is_kept_out_and_shown_at_admin_ensemble(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(reply="A."), "fake-summary": Behaviour(reply="S.")})
    path = tmp_path / "ensemble.toml"
    async with running_service(
        tmp_path, fake, ensemble=single("You are a."), env=FAST_RELOAD
    ) as service:
        before = (await service.client.get("/admin/ensemble")).json()
        assert before["problem"] is None
        assert before["ensembles"]["default"]["agents"] == [{"name": "a", "model": "fake-a"}]

        rewrite(path, single("You are a.", timeout="timeout_s = -1\n"))
        with trio.fail_after(3):
            while service.resources.ensembles.problem is None:  # noqa: ASYNC110
                await trio.sleep(0.02)
        after = (await service.client.get("/admin/ensemble")).json()
        async with service.client.stream("POST", "/api/process", json=body("m-3")) as response:
            events = await read_events(response)

    assert after["version"] == before["version"]
    assert after["problem"]["message"].startswith(f"{path}:5: agents[0].timeout_s: ")
    assert events[-1].data["type"] == "done"
    assert events[-1].data["ensemble_version"] == before["version"]


NAMED = """
default = "chat"

[ensembles.chat]
[[ensembles.chat.agents]]
name = "talker"
model = "fake-a"
system_prompt = "You chat."
[ensembles.chat.summarizer]
name = "combine"
model = "fake-summary"
system_prompt = "Combine."

[ensembles.code]
[[ensembles.code.agents]]
name = "coder"
model = "fake-a"
system_prompt = "You write code."
[[ensembles.code.agents]]
name = "reviewer"
model = "fake-a"
system_prompt = "You review code."
[ensembles.code.summarizer]
name = "combine"
model = "fake-summary"
system_prompt = "Combine."
"""


async def test_a_request_picks_its_ensemble_by_name(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(reply="A."), "fake-summary": Behaviour(reply="S.")})
    async with running_service(tmp_path, fake, ensemble=NAMED) as service:
        async with service.client.stream(
            "POST", "/api/process", json=body("m-4", ensemble="code")
        ) as response:
            code = await read_events(response)
        async with service.client.stream("POST", "/api/process", json=body("m-5")) as response:
            default = await read_events(response)
        unknown = await service.client.post("/api/process", json=body("m-6", ensemble="poetry"))

    # Answers arrive in whatever order the agents finish.
    assert sorted(e.data["source"] for e in code if e.event == "agent.completed") == [
        "coder",
        "reviewer",
    ]
    assert [e.data["source"] for e in default if e.event == "agent.completed"] == ["talker"]
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "code": "ensemble_not_found",
        "message": "ensemble: no ensemble named 'poetry' (one of: chat, code)",
        "field": "ensemble",
    }
