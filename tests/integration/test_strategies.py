"""Each deliberation strategy over real HTTP: the service on a real port in front of the fake
upstream, whose models answer a member's question and its later prompts (a review, a
revision, a layer, a selection) each their own way, by the prompt's text.

Per strategy, from one run: the upstream calls, step by step, as many as the ensemble says a
request makes; what each member is shown; the events, each checked against the published
document; the replay and the stored answers, one per (phase, round, agent). Then the moments
between steps: a resume in the middle of a later round, a hang-up in one, a member failing
in one, and a review whose ranking cannot be read. (The rules themselves, in virtual time,
are in tests/unit/test_deliberation.py.)
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.contract.conftest import component, published, response_problems, validator
from tests.fake_upstream import Behaviour, CallRecord, FakeUpstream, split_tokens
from tests.integration.harness import RunningService, SseEvent, iter_events, running_service
from tests.integration.test_conversations import events_of
from tests.integration.test_disconnect import assert_closed_soon_after, read_until
from tests.integration.test_main_process import parse_sse

AGENTS = ("alpha", "beta", "gamma")
CHAIR = "chair"
QUESTION = "What is six times seven?"
# The strategies' default prompts, each met only in its own step.
REVIEW = "FINAL RANKING:"
LAYER = "Synthesize"
TOKEN_KINDS = ("prompt_tokens", "completion_tokens")
# A call as the fake recorded it: its model, and the `on_prompt` text that chose its answer.
Call = tuple[str, str]


def model(member: str) -> str:
    return f"fake-{member}"


def ensemble(strategy: str, options: str = "", *, summarizer: bool = True, **agent: str) -> str:
    """A single-ensemble file: the three agents (`agent` adds fields to each), the chair as
    its summarizer, and `options` as its [deliberation]. No prompt names a member: a name in
    what a member is shown comes from the strategy."""
    parts = [f'strategy = "{strategy}"\n']
    if options:
        parts.append(f"[deliberation]\n{options}\n")
    extra = "".join(f"{key} = {value}\n" for key, value in agent.items())
    parts += [
        f'[[agents]]\nname = "{name}"\nmodel = "{model(name)}"\n'
        f'system_prompt = "Answer with care."\n{extra}'
        for name in AGENTS
    ]
    if summarizer:
        parts.append(
            f'[summarizer]\nname = "{CHAIR}"\nmodel = "{model(CHAIR)}"\n'
            'system_prompt = "Write the reply."\n'
        )
    return "\n".join(parts)


def answers(
    first: dict[str, str], later: Callable[[str], Sequence[tuple[str, Behaviour]]] = lambda n: ()
) -> FakeUpstream:
    """The fake: each agent's model answers the question with `first[agent]`, and the
    prompts `later(agent)` names as it says; the chair answers a summary of its own."""
    behaviours = {
        model(name): Behaviour(reply=text, on_prompt=tuple(later(name)))
        for name, text in first.items()
    }
    return FakeUpstream(behaviours | {model(CHAIR): Behaviour(reply="The reply is 42.")})


def said(text: str) -> Behaviour:
    return Behaviour(reply=text)


async def ask(service: RunningService) -> tuple[list[str], list[SseEvent]]:
    """One whole run of /api/process: its frames as sent, and parsed."""
    body = {"message": QUESTION, "message_id": "m-1"}
    async with service.client.stream("POST", "/api/process", json=body) as response:
        assert response.status_code == 200
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return events_of(raw), parse_sse(raw.decode())


# --- what every strategy's run shows ---------------------------------------------------------


def step_of(event: SseEvent) -> tuple[str, int]:
    """An agent's event's step: its phase and round, absent (the first answers) or on it."""
    return event.data.get("phase", "answer"), event.data.get("round", 0)


def prompt_of(call: CallRecord) -> str:
    content: str = call.messages[-1]["content"]
    return content


def call_of(fake: FakeUpstream, member: str, on_prompt: str = "") -> CallRecord:
    (call,) = [c for c in fake.calls_for(model(member)) if c.on_prompt == on_prompt]
    return call


def assert_calls_in_steps(fake: FakeUpstream, steps: Sequence[Iterable[Call]]) -> None:
    """The upstream calls were `steps`, in that order: each step's calls (in any order, as
    they run at once) all made after every call of the step before had ended."""
    expected = [Counter(step) for step in steps]
    assert len(fake.calls) == sum(step.total() for step in expected)
    start = 0
    made: list[list[CallRecord]] = []
    for step in expected:
        made.append(fake.calls[start : start + step.total()])
        start += step.total()
    assert [Counter((c.model, c.on_prompt) for c in step) for step in made] == expected
    for before, after in itertools.pairwise(made):
        ended = [call.ended_at for call in before]
        assert None not in ended
        assert max(e for e in ended if e is not None) <= min(c.started_at for c in after)


def outline(events: Sequence[SseEvent]) -> list[str]:
    """The run without its agents' events, a run of summary pieces as one."""
    lines: list[str] = []
    for event in events:
        if event.event.startswith("agent."):
            continue
        line = event.event
        if event.event.startswith("round."):
            line += f" {event.data['phase']} {event.data['round']}"
        elif event.event in ("council.review", "answer.chosen", "summary.started", "done"):
            line += f" {event.data['source']}"
        if lines and line == lines[-1] == "summary.delta":
            continue
        lines.append(line)
    return lines


def assert_rounds_hold(events: Sequence[SseEvent]) -> None:
    """Every agent event falls inside a round and carries its step on the wire (unless it is
    the first answers'); every member asked in a round starts once and ends once in it, as
    `round.completed` reports; and one terminal event ends the run."""
    current: dict[str, Any] | None = None
    in_round: list[SseEvent] = []
    for event in events:
        if event.event == "round.started":
            assert current is None
            current, in_round = event.data, []
            phase, number = current["phase"], current["round"]
        elif event.event == "round.completed":
            assert current is not None
            assert (event.data["phase"], event.data["round"]) == (phase, number)
            started = Counter(e.data["source"] for e in in_round if e.event == "agent.started")
            answered = [e.data["source"] for e in in_round if e.event == "agent.completed"]
            failed = [e.data["source"] for e in in_round if e.event == "agent.failed"]
            assert started == Counter(current["agents"])
            assert sorted(answered) == sorted(event.data["answered"])
            assert sorted(failed) == sorted(event.data["missing"])
            assert sorted(answered + failed) == sorted(current["agents"])
            current = None
        elif event.event.startswith("agent."):
            assert current is not None, f"{event.event} outside a round"
            assert step_of(event) == (phase, number)
            assert ("phase" in event.data) == (number > 0)
            in_round.append(event)
    assert current is None
    assert [e.data["final"] for e in events].count(True) == 1
    assert events[-1].data["final"] is True


async def assert_stored_as_streamed(
    service: RunningService, frames: list[str], events: list[SseEvent]
) -> dict[str, Any]:
    """Each frame matches the published document; the stored events replay the stream frame
    for frame; the message keeps each agent's outcome per (phase, round). Its JSON."""
    document = await published(service.client)
    stream_event = validator(document, component("StreamEvent"))
    problems = [
        f"{event.event} {error.message}"
        for event in events
        for error in stream_event.iter_errors(event.data)
    ]
    assert problems == []
    replay = await service.client.get("/api/messages/m-1/events")
    assert events_of(replay.content) == frames
    response = await service.client.get("/api/messages/m-1")
    assert response_problems(document, "GET", "/api/messages/{message_id}", response) == []
    message: dict[str, Any] = response.json()
    stored = {
        (a["phase"], a["round"], a["agent"]): (a["outcome"], a["text"]) for a in message["agents"]
    }
    streamed = {
        (*step_of(e), e.data["source"]): (
            ("completed", e.data["message"]) if e.event == "agent.completed" else ("failed", None)
        )
        for e in events
        if e.event in ("agent.completed", "agent.failed")
    }
    assert stored == streamed
    assert len(message["agents"]) == len(stored)
    # Each row has its own call's tokens; an agent's rows add up to its tokens in the run.
    (end,) = [e.data for e in events if e.data["final"]]
    for agent in {a["agent"] for a in message["agents"]}:
        rows = [a["usage"] for a in message["agents"] if a["agent"] == agent and a["usage"]]
        spent = {kind: sum(row[kind] for row in rows) for kind in TOKEN_KINDS}
        assert spent == end["usage"].get(agent, dict.fromkeys(TOKEN_KINDS, 0))
    summary = "".join(e.data["message"] for e in events if e.event == "summary.delta")
    assert message["summary"] == summary
    return message


async def calls_per_request(service: RunningService) -> int:
    status = (await service.client.get("/admin/ensemble")).json()
    calls: int = status["ensembles"]["default"]["calls_per_request"]
    return calls


# --- each strategy, whole ---------------------------------------------------------------------


async def test_a_vote_asks_each_agent_once_and_replies_with_the_answer_most_gave(
    tmp_path: Path,
) -> None:
    fake = answers({"alpha": "42", "beta": "Forty-one.", "gamma": " 42. "})
    text = ensemble("vote", summarizer=False)
    async with running_service(tmp_path, fake, ensemble=text) as service:
        frames, events = await ask(service)
        assert len(fake.calls) == await calls_per_request(service) == 3
        message = await assert_stored_as_streamed(service, frames, events)

    assert_calls_in_steps(fake, [[(model(n), "") for n in AGENTS]])
    assert {prompt_of(call) for call in fake.calls} == {QUESTION}
    assert outline(events) == [
        "round.started answer 0",
        "round.completed answer 0",
        "vote.tally",
        "answer.chosen alpha",
        "summary.started alpha",
        "summary.delta",
        "done alpha",
    ]
    assert_rounds_hold(events)
    (tally,) = [e.data for e in events if e.event == "vote.tally"]
    assert (tally["method"], tally["source"]) == ("exact", "vote")
    assert tally["groups"] == [
        {"agents": ["alpha", "gamma"], "votes": 2},
        {"agents": ["beta"], "votes": 1},
    ]
    (chosen,) = [e.data for e in events if e.event == "answer.chosen"]
    assert "2 of 3" in chosen["reason"]
    # The chosen answer is the reply as it was given.
    assert message["summary"] == "42"
    assert message["status"] == "completed"


async def test_usc_shows_the_selector_numbered_answers_and_replies_with_the_one_it_names(
    tmp_path: Path,
) -> None:
    fake = answers({"alpha": "Forty-two.", "beta": "Forty.", "gamma": "It is 42."})
    fake.behaviours[model(CHAIR)] = said("The most consistent response is Response 3.")
    async with running_service(tmp_path, fake, ensemble=ensemble("usc")) as service:
        frames, events = await ask(service)
        assert len(fake.calls) == await calls_per_request(service) == 4
        message = await assert_stored_as_streamed(service, frames, events)

    assert_calls_in_steps(fake, [[(model(n), "") for n in AGENTS], [(model(CHAIR), "")]])
    selection = prompt_of(call_of(fake, CHAIR))
    for number, shown in enumerate(("Forty-two.", "Forty.", "It is 42."), start=1):
        assert f"Response {number}: {shown}" in selection
    assert not any(name in selection for name in AGENTS)
    assert outline(events) == [
        "round.started answer 0",
        "round.completed answer 0",
        "round.started select 1",
        "round.completed select 1",
        "answer.chosen gamma",
        "summary.started gamma",
        "summary.delta",
        "done gamma",
    ]
    assert_rounds_hold(events)
    (chosen,) = [e.data for e in events if e.event == "answer.chosen"]
    assert chosen["reason"] == "the selector chose Response 3"
    assert message["summary"] == "It is 42."
    assert ("select", 1, CHAIR) in {(a["phase"], a["round"], a["agent"]) for a in message["agents"]}


COUNCIL_ANSWERS = {"alpha": "Forty-two.", "beta": "It is 42.", "gamma": "Six sevens: 42."}


def ranked(first: str, second: str, preface: str = "Both are right.") -> Behaviour:
    return said(f"{preface}\n{REVIEW}\n1. {first}\n2. {second}")


async def test_a_council_reviews_anonymised_answers_and_the_chair_reads_the_ranking(
    tmp_path: Path,
) -> None:
    fake = answers(COUNCIL_ANSWERS, lambda _: [(REVIEW, ranked("Response B", "Response A"))])
    async with running_service(tmp_path, fake, ensemble=ensemble("council")) as service:
        frames, events = await ask(service)
        assert len(fake.calls) == await calls_per_request(service) == 7
        await assert_stored_as_streamed(service, frames, events)

    assert_calls_in_steps(
        fake,
        [
            [(model(n), "") for n in AGENTS],
            [(model(n), REVIEW) for n in AGENTS],
            [(model(CHAIR), "")],
        ],
    )
    assert outline(events) == [
        "round.started answer 0",
        "round.completed answer 0",
        "round.started review 1",
        "round.completed review 1",
        "council.review alpha",
        "council.review beta",
        "council.review gamma",
        "council.ranking",
        "summary.started chair",
        "summary.delta",
        "done chair",
    ]
    assert_rounds_hold(events)
    reviews = {e.data["source"]: e.data for e in events if e.event == "council.review"}
    chair = prompt_of(call_of(fake, CHAIR))
    for reviewer in AGENTS:
        review = reviews[reviewer]
        labels: dict[str, str] = review["labels"]
        assert sorted(labels) == ["Response A", "Response B"]
        assert sorted(labels.values()) == sorted(set(AGENTS) - {reviewer})
        assert review["ranking"] == [labels["Response B"], labels["Response A"]]
        assert "error" not in review
        call = call_of(fake, reviewer, REVIEW)
        shown = json.dumps(call.messages)
        # No member's name, and not the reviewer's own answer: each other answer under
        # the label the event reports for it.
        assert not any(name in shown for name in (*AGENTS, CHAIR))
        assert COUNCIL_ANSWERS[reviewer] not in shown
        for label, agent in labels.items():
            assert f"{label}:\n{COUNCIL_ANSWERS[agent]}\n" in prompt_of(call)
        # The chair reads each review with the labels turned back into names.
        named = f"1. {labels['Response B']}\n2. {labels['Response A']}"
        assert f'<review from="{reviewer}">\nBoth are right.\n{REVIEW}\n{named}\n' in chair
    (aggregate,) = [e.data["ranking"] for e in events if e.event == "council.ranking"]
    places: dict[str, list[int]] = {name: [] for name in AGENTS}
    for review in reviews.values():
        for place, agent in enumerate(review["ranking"], start=1):
            places[agent].append(place)
    means = {agent: sum(p) / len(p) for agent, p in places.items()}
    assert [rank["agent"] for rank in aggregate] == sorted(AGENTS, key=lambda a: means[a])
    assert {rank["agent"]: rank["average_rank"] for rank in aggregate} == means
    assert {rank["reviews"] for rank in aggregate} == {2}
    line = ", ".join(f"{r['agent']} (mean place {r['average_rank']})" for r in aggregate)
    assert f"Aggregate ranking, best first: {line}." in chair


async def test_a_council_without_anonymity_shows_each_answer_under_its_agents_name(
    tmp_path: Path,
) -> None:
    rankings = {
        "alpha": ranked("gamma", "beta"),
        "beta": ranked("alpha", "gamma"),
        "gamma": ranked("alpha", "beta"),
    }
    fake = answers(COUNCIL_ANSWERS, lambda name: [(REVIEW, rankings[name])])
    text = ensemble("council", "anonymize = false")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        frames, events = await ask(service)
        await assert_stored_as_streamed(service, frames, events)

    reviews = {e.data["source"]: e.data for e in events if e.event == "council.review"}
    for reviewer in AGENTS:
        others = [name for name in AGENTS if name != reviewer]
        review = prompt_of(call_of(fake, reviewer, REVIEW))
        for other in others:
            assert f"{other}:\n{COUNCIL_ANSWERS[other]}\n" in review
        assert COUNCIL_ANSWERS[reviewer] not in review
        assert "Response A" not in review.split(REVIEW)[0]
        assert reviews[reviewer]["labels"] == {other: other for other in others}
    assert [reviews[name]["ranking"] for name in AGENTS] == [
        ["gamma", "beta"],
        ["alpha", "gamma"],
        ["alpha", "beta"],
    ]
    (aggregate,) = [e.data["ranking"] for e in events if e.event == "council.ranking"]
    assert [(r["agent"], r["average_rank"]) for r in aggregate] == [
        ("alpha", 1.0),
        ("gamma", 1.5),
        ("beta", 2.0),
    ]


LAYERED = {"alpha": "North", "beta": "South", "gamma": "East"}


async def test_a_mixture_feeds_each_layer_the_one_before_and_the_aggregator_the_last(
    tmp_path: Path,
) -> None:
    def layers(name: str) -> list[tuple[str, Behaviour]]:
        # A second layer's prompt holds the first layer's answers ("... L1").
        return [("L1", said(f"{LAYERED[name]} L2")), (LAYER, said(f"{LAYERED[name]} L1"))]

    fake = answers({name: f"{text} L0" for name, text in LAYERED.items()}, layers)
    async with running_service(tmp_path, fake, ensemble=ensemble("moa", "layers = 4")) as service:
        frames, events = await ask(service)
        assert len(fake.calls) == await calls_per_request(service) == 10
        await assert_stored_as_streamed(service, frames, events)

    assert_calls_in_steps(
        fake,
        [
            [(model(n), "") for n in AGENTS],
            [(model(n), LAYER) for n in AGENTS],
            [(model(n), "L1") for n in AGENTS],
            [(model(CHAIR), "")],
        ],
    )
    for name in AGENTS:
        first, second = prompt_of(call_of(fake, name, LAYER)), prompt_of(call_of(fake, name, "L1"))
        assert all(f"{text} L0" in first for text in LAYERED.values())
        assert all(f"{text} L1" in second for text in LAYERED.values())
        assert "L0" not in second
    aggregator = prompt_of(call_of(fake, CHAIR))
    assert all(f'<answer from="{n}">\n{LAYERED[n]} L2\n' in aggregator for n in AGENTS)
    assert "L1" not in aggregator
    assert "L0" not in aggregator
    assert outline(events) == [
        "round.started answer 0",
        "round.completed answer 0",
        "round.started layer 1",
        "round.completed layer 1",
        "round.started layer 2",
        "round.completed layer 2",
        "summary.started chair",
        "summary.delta",
        "done chair",
    ]
    assert_rounds_hold(events)


def debating(name: str, round_2: Behaviour | None = None) -> list[tuple[str, Behaviour]]:
    """An agent's revisions: "<its word> R1" in round 1, "<its word> R2" in round 2."""
    return [
        ("round 1 of 2", said(f"{LAYERED[name]} R1")),
        ("round 2 of 2", round_2 or said(f"{LAYERED[name]} R2")),
    ]


DEBATE_FIRST = {name: f"{text} R0" for name, text in LAYERED.items()}


async def test_a_debate_shows_each_agent_its_own_answer_and_the_others_latest_each_round(
    tmp_path: Path,
) -> None:
    fake = answers(DEBATE_FIRST, debating)
    text = ensemble("debate", "rounds = 2")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        frames, events = await ask(service)
        assert len(fake.calls) == await calls_per_request(service) == 10
        await assert_stored_as_streamed(service, frames, events)

    assert_calls_in_steps(
        fake,
        [
            [(model(n), "") for n in AGENTS],
            [(model(n), "round 1 of 2") for n in AGENTS],
            [(model(n), "round 2 of 2") for n in AGENTS],
            [(model(CHAIR), "")],
        ],
    )
    for name in AGENTS:
        for number in (1, 2):
            revise = prompt_of(call_of(fake, name, f"round {number} of 2"))
            before = number - 1
            own = f"Your answer so far:\n<answer>\n{LAYERED[name]} R{before}\n</answer>"
            assert own in revise
            others = [other for other in AGENTS if other != name]
            for other in others:
                assert f'<answer from="{other}">\n{LAYERED[other]} R{before}\n' in revise
            assert f'<answer from="{name}">' not in revise
            assert f"R{number}" not in revise
    summary = prompt_of(call_of(fake, CHAIR))
    assert all(f'<answer from="{n}">\n{LAYERED[n]} R2\n' in summary for n in AGENTS)
    assert "R1" not in summary
    assert outline(events) == [
        "round.started answer 0",
        "round.completed answer 0",
        "round.started revise 1",
        "round.completed revise 1",
        "round.started revise 2",
        "round.completed revise 2",
        "summary.started chair",
        "summary.delta",
        "done chair",
    ]
    assert_rounds_hold(events)


# --- between the steps -----------------------------------------------------------------------


async def test_a_resume_in_the_middle_of_a_later_round_gets_the_rest_once(
    tmp_path: Path,
) -> None:
    def slow_second_round(name: str) -> list[tuple[str, Behaviour]]:
        words = f"{LAYERED[name]} R2" + " and then some more" * 3
        return debating(name, Behaviour(tokens=split_tokens(words), token_delay_s=0.02))

    fake = answers(DEBATE_FIRST, slow_second_round)
    text = ensemble("debate", "rounds = 2")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        seen: list[SseEvent] = []
        body = {"message": QUESTION, "message_id": "m-1", "on_disconnect": "continue"}
        async with service.client.stream("POST", "/api/process", json=body) as response:

            def keep(event: SseEvent) -> bool:
                seen.append(event)
                return event.event == "agent.delta" and step_of(event) == ("revise", 2)

            await read_until(iter_events(response), keep)
        # The connection dropped in the second revision; the client comes back with its id.
        headers = {"Last-Event-ID": seen[-1].id}
        async with service.client.stream(
            "GET", "/api/messages/m-1/events", headers=headers
        ) as response:
            assert response.status_code == 200
            rest = [event async for event in iter_events(response)]
        replay = parse_sse((await service.client.get("/api/messages/m-1/events")).text)

    everything = seen + rest
    assert [int(e.id) for e in everything] == list(range(1, len(everything) + 1))
    assert [(e.id, e.event, e.data) for e in everything] == [
        (e.id, e.event, e.data) for e in replay
    ]
    assert "round.completed revise 2" not in outline(seen)
    assert outline(rest)[0] == "round.completed revise 2"
    assert [e.event for e in rest if e.data["final"]] == ["done"]
    assert rest[-1].event == "done"
    assert_rounds_hold(everything)
    for name in AGENTS:
        pieces = [
            e.data["message"]
            for e in everything
            if e.event == "agent.delta" and e.data["source"] == name and step_of(e) == ("revise", 2)
        ]
        (answer,) = [
            e.data["message"]
            for e in everything
            if e.event == "agent.completed"
            and e.data["source"] == name
            and step_of(e) == ("revise", 2)
        ]
        assert "".join(pieces) == answer
        assert answer.startswith(f"{LAYERED[name]} R2 and then")
    # Nothing was asked again for the client that came back.
    assert len(fake.calls) == 10


def streaming_slowly(text: str) -> Behaviour:
    return Behaviour(tokens=(f"{text} ",) + ("tick ",) * 200, token_delay_s=0.05)


@pytest.mark.parametrize(
    ("strategy", "options", "prompt", "phase", "step"),
    [
        ("council", "", REVIEW, "review", 1),
        ("debate", "rounds = 2", "round 2 of 2", "revise", 2),
    ],
)
async def test_hanging_up_in_a_later_round_closes_every_call_of_that_round(
    tmp_path: Path, strategy: str, options: str, prompt: str, phase: str, step: int
) -> None:
    def later(name: str) -> list[tuple[str, Behaviour]]:
        first_revision = [("round 1 of 2", said(f"{LAYERED[name]} R1"))]
        return [(prompt, streaming_slowly(LAYERED[name])), *first_revision]

    fake = answers(DEBATE_FIRST, later)
    text = ensemble(strategy, options)
    async with running_service(tmp_path, fake, ensemble=text) as service:
        body = {"message": QUESTION, "message_id": "m-1"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            streaming: set[str] = set()

            def every_member_streaming(event: SseEvent) -> bool:
                if event.event == "agent.delta" and step_of(event) == (phase, step):
                    streaming.add(event.data["source"])
                return streaming == set(AGENTS)

            await read_until(iter_events(response), every_member_streaming)
            calls = [call_of(fake, name, prompt) for name in AGENTS]
            assert [call.outcome for call in calls] == ["open"] * 3
            hung_up_at = trio.current_time()
        await assert_closed_soon_after(calls, hung_up_at)

    assert fake.open_calls() == []
    assert not fake.calls_for(model(CHAIR))


async def test_a_debater_failing_its_revision_is_reported_and_the_rest_debate_on(
    tmp_path: Path,
) -> None:
    def later(name: str) -> list[tuple[str, Behaviour]]:
        if name == "gamma":
            return [("round 1 of 2", Behaviour(status=500))]
        return debating(name)

    fake = answers(DEBATE_FIRST, later)
    text = ensemble("debate", "rounds = 2", retries="0")
    async with running_service(tmp_path, fake, ensemble=text) as service:
        frames, events = await ask(service)
        message = await assert_stored_as_streamed(service, frames, events)

    # Its call failed once (no retries here); it is not asked again, and nobody is shown it.
    assert_calls_in_steps(
        fake,
        [
            [(model(n), "") for n in AGENTS],
            [(model(n), "round 1 of 2") for n in AGENTS],
            [(model(n), "round 2 of 2") for n in ("alpha", "beta")],
            [(model(CHAIR), "")],
        ],
    )
    (failed,) = [e.data for e in events if e.event == "agent.failed"]
    assert failed["source"] == "gamma"
    assert (failed["phase"], failed["round"], failed["attempts"]) == ("revise", 1, 1)
    assert failed["error"]["code"] == "upstream_unavailable"
    rounds = [
        (e.event, e.data["phase"], e.data["round"], e.data.get("agents"), e.data.get("missing"))
        for e in events
        if e.event.startswith("round.")
    ]
    assert rounds == [
        ("round.started", "answer", 0, list(AGENTS), None),
        ("round.completed", "answer", 0, None, []),
        ("round.started", "revise", 1, list(AGENTS), None),
        ("round.completed", "revise", 1, None, ["gamma"]),
        ("round.started", "revise", 2, ["alpha", "beta"], None),
        ("round.completed", "revise", 2, None, []),
    ]
    assert_rounds_hold(events)
    second = prompt_of(call_of(fake, "alpha", "round 2 of 2"))
    assert '<answer from="beta">\nSouth R1\n' in second
    assert "gamma" not in second
    summary = prompt_of(call_of(fake, CHAIR))
    assert "gamma" not in summary
    assert events[-1].event == "done"
    assert message["status"] == "completed"
    (row,) = [a for a in message["agents"] if (a["phase"], a["agent"]) == ("revise", "gamma")]
    assert (row["outcome"], row["error"]) == ("failed", {"code": "upstream_unavailable"})


async def test_a_review_whose_ranking_cannot_be_read_is_reported_and_the_council_goes_on(
    tmp_path: Path,
) -> None:
    def reviews(name: str) -> list[tuple[str, Behaviour]]:
        if name == "gamma":
            return [(REVIEW, said("Both answers look right to me."))]
        return [(REVIEW, ranked("Response A", "Response B"))]

    fake = answers(COUNCIL_ANSWERS, reviews)
    async with running_service(tmp_path, fake, ensemble=ensemble("council")) as service:
        frames, events = await ask(service)
        await assert_stored_as_streamed(service, frames, events)

    by_reviewer = {e.data["source"]: e.data for e in events if e.event == "council.review"}
    unread = by_reviewer["gamma"]
    assert unread["ranking"] is None
    assert unread["error"]["code"] == "ranking_unreadable"
    assert sorted(unread["labels"].values()) == ["alpha", "beta"]
    for reviewer in ("alpha", "beta"):
        labels = by_reviewer[reviewer]["labels"]
        assert by_reviewer[reviewer]["ranking"] == [labels["Response A"], labels["Response B"]]
    (aggregate,) = [e.data["ranking"] for e in events if e.event == "council.ranking"]
    # Two readable reviews, each placing two answers.
    assert sum(rank["reviews"] for rank in aggregate) == 4
    assert {rank["agent"] for rank in aggregate} == set(AGENTS)
    # The chair still reads the review, and writes the reply.
    assert '<review from="gamma">\nBoth answers look right to me.\n' in prompt_of(
        call_of(fake, CHAIR)
    )
    assert events[-1].event == "done"
