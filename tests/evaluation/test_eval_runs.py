"""Evaluations run whole: the fake upstream, scripted so that each member is right on known
questions, gives exactly those scores over HTTP; the command with the mock writes its
report, resumes an interrupted run without asking again, and stops before passing its
budget; the judge asks both orders."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from service.ensemble import Agent, Ensemble, Summarizer
from service.ensemble.model import ModelPrice
from service.evaluation.book import EvaluationError, FolderBook
from service.evaluation.dataset import Item
from service.evaluation.judge import Verdict, judge_pairs, win_rates
from service.evaluation.report import build_report, table, with_judgements
from service.evaluation.runner import Contestant, Plan, evaluate
from service.evaluation.scoring import interval
from service.llm import ChatRequest, Completion, CompletionStream, FinishReason, Usage
from tests.fake_upstream import Behaviour, CallRecord, FakeUpstream, split_tokens
from tests.integration.harness import (
    RunningService,
    SseEvent,
    ensemble_toml,
    read_events,
    running_service,
)

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    Item(key=f"q{n}", question=f"Q{n}: what is {n} + 1?", answers=(str(n + 1),)) for n in range(10)
]
# Who is right on which questions: A on 6 of 10, B on 5, the summarizer (the ensemble) on 8.
RIGHT = {"a": set(range(6)), "b": set(range(5)), "sum": set(range(8))}


class TableModel:
    """Answers each caller right on its questions of RIGHT, wrong (off by one) on the rest."""

    def __init__(self) -> None:
        self.calls = 0

    def _text(self, request: ChatRequest) -> str:
        self.calls += 1
        number = int(re.search(r"Q(\d+)", request.messages[-1].content).group(1))  # type: ignore[union-attr]
        right = number in RIGHT[request.caller]
        return f"It is {number + 1 if right else number + 2}."

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(text=self._text(request), usage=Usage(1000, 100))

    @asynccontextmanager
    async def stream(self, request: ChatRequest) -> AsyncIterator[CompletionStream]:
        yield _Stream(self._text(request))

    async def aclose(self) -> None:
        return None


class _Stream:
    def __init__(self, text: str) -> None:
        self.text = text
        self.usage: Usage | None = Usage(2000, 100)
        self.finish_reason: FinishReason = "stop"

    async def __aiter__(self) -> AsyncIterator[str]:
        yield self.text


def the_ensemble() -> Ensemble:
    return Ensemble(
        agents=(
            Agent(name="a", system_prompt="x", model="m"),
            Agent(name="b", system_prompt="x", model="m"),
        ),
        summarizer=Summarizer(name="sum", system_prompt="x", model="m"),
        prices={"m": ModelPrice(input_per_million=1.0, output_per_million=10.0)},
    )


# Per million tokens: (input, output).
PRICES = {"fake-a": (1.0, 10.0), "fake-b": (2.0, 20.0), "fake-summary": (3.0, 30.0)}


def scripted_upstream() -> FakeUpstream:
    """Each model answers question n with n + 1 when RIGHT says so, else off by one."""

    def script(caller: str) -> Behaviour:
        return Behaviour(
            reply="I cannot tell.",
            on_prompt=tuple(
                (f"Q{n}:", Behaviour(reply=f"It is {n + 1 if n in RIGHT[caller] else n + 2}."))
                for n in range(len(QUESTIONS))
            ),
        )

    return FakeUpstream(
        {"fake-a": script("a"), "fake-b": script("b"), "fake-summary": script("sum")}
    )


SCRIPTED_ENSEMBLE = ensemble_toml({"a": "fake-a", "b": "fake-b"}, "fake-summary") + "".join(
    f'[prices."{model}"]\ninput_per_million = {i}\noutput_per_million = {o}\n'
    for model, (i, o) in PRICES.items()
)


def dollars(call: CallRecord) -> float:
    """A call's price, from what the fake saw and sent: its usage counts a word of the
    prompt as a token, and each piece of the reply."""
    prompt = sum(len(m["content"].split()) for m in call.messages)
    (reply,) = {
        b.reply
        for text, b in scripted_upstream().behaviour_for(call.model).on_prompt
        if text == call.on_prompt
    }
    per_input, per_output = PRICES[call.model]
    return (prompt * per_input + len(split_tokens(reply or "")) * per_output) / 1e6


async def evaluated(service: RunningService, body: dict[str, Any]) -> tuple[SseEvent, Any]:
    """An evaluation started on the server, followed to its end: its last event and report."""
    started = await service.client.post("/admin/evals", json=body)
    assert started.status_code == 202, started.text
    evaluation = started.json()["id"]
    with trio.fail_after(30):
        async with service.client.stream("GET", f"/admin/evals/{evaluation}/events") as events:
            ended = (await read_events(events))[-1]
    report = (await service.client.get(f"/admin/evals/{evaluation}")).json()["report"]
    return ended, report


async def test_the_report_gives_each_contestant_its_score_interval_and_cost(tmp_path: Path) -> None:
    """The fake upstream, over HTTP, scripted so that member A is right on 6 questions of
    10, B on 5, and the ensemble (its summary) on 8: the report says exactly that, with
    each score's interval and what each contestant cost."""
    fake = scripted_upstream()
    rows = [{"id": i.key, "question": i.question, "answer": i.answers[0]} for i in QUESTIONS]
    async with running_service(tmp_path, fake, ensemble=SCRIPTED_ENSEMBLE) as service:
        ended, report = await evaluated(service, {"rows": rows, "scorer": "numeric", "seed": 1})
        ledger = (await service.client.get("/admin/usage")).json()["usage"]

    assert ended.data["status"] == "completed"
    rows_by_name = {row["contestant"]: row for row in report["rows"]}
    assert {name: row["score"] for name, row in rows_by_name.items()} == {
        "default": 0.8,
        "default/a": 0.6,
        "default/b": 0.5,
    }
    for name, row in rows_by_name.items():
        right = RIGHT["sum" if name == "default" else name.removeprefix("default/")]
        outcomes = [1.0 if n in right else 0.0 for n in range(len(QUESTIONS))]
        low, high = interval(outcomes, seed=1)
        assert (row["low"], row["high"]) == (round(low, 4), round(high, 4))
        assert row["low"] < row["score"] < row["high"]
        assert row["high"] - row["low"] > 0.1  # ten questions: a wide interval, said so
    (gain,) = report["gains"]
    assert (gain["best_member"], gain["difference"]) == ("default/a", 0.2)
    # Every question: the ensemble's three calls and one for each member alone.
    assert len(fake.calls) == 10 * 3 + 10 * 2
    # Dollars, from the file's prices and the tokens the fake reported.
    one_call = {(c.model, c.on_prompt): dollars(c) for c in fake.calls}
    alone = {
        member: sum(one_call[(model, f"Q{n}:")] for n in range(len(QUESTIONS)))
        for member, model in (("default/a", "fake-a"), ("default/b", "fake-b"))
    }
    summaries = sum(one_call[("fake-summary", f"Q{n}:")] for n in range(len(QUESTIONS)))
    assert rows_by_name["default/a"]["cost_usd"] == pytest.approx(alone["default/a"])
    assert rows_by_name["default/b"]["cost_usd"] == pytest.approx(alone["default/b"])
    expected = alone["default/a"] + alone["default/b"] + summaries
    assert rows_by_name["default"]["cost_usd"] == pytest.approx(expected)
    assert rows_by_name["default"]["cost_per_correct_usd"] == pytest.approx(expected / 8, abs=1e-6)
    # The usage ledger counts the evaluation's calls, as it does a request's.
    spent = {line["model"]: (line["calls"], line["cost_usd"]) for line in ledger}
    assert spent == {
        "fake-a": (20, pytest.approx(2 * alone["default/a"])),
        "fake-b": (20, pytest.approx(2 * alone["default/b"])),
        "fake-summary": (10, pytest.approx(summaries)),
    }


async def test_the_first_token_comes_before_the_answer_ends_for_members_and_the_ensemble(
    tmp_path: Path,
) -> None:
    """Each model waits before its first piece and between pieces, over HTTP: a member
    alone and the ensemble (its summary, as a user sees it) each show their first token
    at least the gaps between pieces before the answer is complete."""
    gap = 0.1
    pieces = Behaviour(
        tokens=("It ", "is ", "the ", "number ", "4."), first_token_delay_s=0.05, token_delay_s=gap
    )
    fake = FakeUpstream({"fake-a": pieces, "fake-b": pieces, "fake-summary": pieces})
    rows = [{"id": "q", "question": "What is 2 + 2?", "answer": "4"}]
    async with running_service(tmp_path, fake) as service:
        ended, report = await evaluated(service, {"rows": rows})

    assert ended.data["status"] == "completed"
    rows_by_name = {row["contestant"]: row for row in report["rows"]}
    assert set(rows_by_name) == {"default", "default/alpha", "default/beta"}
    for name, row in rows_by_name.items():
        assert row["correct"] == 1, name
        # Four gaps after the first piece: the answer ends that much after it at least.
        assert row["mean_first_token_s"] <= row["mean_latency_s"] - 2 * gap, row
    # The ensemble's first token is its summary's: after its agents answered whole.
    assert rows_by_name["default"]["mean_first_token_s"] > 4 * gap


SAMPLE_ENSEMBLE = ROOT / "examples" / "eval" / "ensemble.toml"


def run_command(
    *args: str, cwd: Path, ensemble_file: Path = SAMPLE_ENSEMBLE, stderr: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`llm-fanout eval` on the arithmetic sample with the mock; its error output captured,
    or written to the file descriptor `stderr` (a terminal's)."""
    env = {
        "USE_LLM_MOCK": "true",
        "MOCK_FIRST_TOKEN_MS": "0",
        "MOCK_TOKEN_MS": "0",
        "ENSEMBLE_FILE": str(ensemble_file),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "eval",
            str(ROOT / "examples/eval/arithmetic.jsonl"),
            "--scorer",
            "numeric",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=60,
        check=False,
    )


TWO_ENSEMBLES = """
default = "vote"

[ensembles.vote]
strategy = "vote"
[[ensembles.vote.agents]]
name = "a"
model = "mock:wrong"
system_prompt = "Answer with the number."
[[ensembles.vote.agents]]
name = "b"
model = "mock:wrong"
system_prompt = "Answer with the number."
[[ensembles.vote.agents]]
name = "c"
model = "mock:wrong"
system_prompt = "Answer with the number."

[ensembles.pair]
[[ensembles.pair.agents]]
name = "x"
system_prompt = "Answer with the number."
[[ensembles.pair.agents]]
name = "y"
model = "mock:wrong"
system_prompt = "Answer with the number."
[ensembles.pair.summarizer]
name = "sum"
system_prompt = "Give the answer most agents gave."
"""


def test_two_ensembles_each_against_their_own_members(tmp_path: Path) -> None:
    """`--ensemble vote,pair`: each ensemble and each of its agents alone has a row, in
    that order, and each ensemble is set against the best of its own members."""
    ensembles = tmp_path / "ensembles.toml"
    ensembles.write_text(TWO_ENSEMBLES)
    out = tmp_path / "out"
    args = ("--ensemble", "vote, pair", "--limit", "3", "--out", str(out))
    done = run_command(*args, cwd=tmp_path, ensemble_file=ensembles)
    assert done.returncode == 0, done.stderr

    report = json.loads((out / "report.json").read_text())
    assert [row["contestant"] for row in report["rows"]] == [
        *("vote", "vote/a", "vote/b", "vote/c"),
        *("pair", "pair/x", "pair/y"),
    ]
    assert all(row["questions"] == 3 for row in report["rows"])
    assert len(results_of(out)) == 3 * 7
    scores = {row["contestant"]: row["score"] for row in report["rows"]}
    gains = {gain["ensemble"]: gain for gain in report["gains"]}
    assert list(gains) == ["vote", "pair"]
    for name, gain in gains.items():
        members = {n: s for n, s in scores.items() if n.startswith(f"{name}/")}
        assert gain["best_member"] in members
        assert scores[gain["best_member"]] == max(members.values())
        assert gain["difference"] == round(scores[name] - max(members.values()), 4)
        assert f"{name} vs its best member {gain['best_member']}:" in done.stdout


def test_the_progress_bar_is_drawn_on_a_terminal_and_not_elsewhere(tmp_path: Path) -> None:
    """Its error output on a terminal (a pty), the command redraws one line per result
    (captured, as the other tests run it, it draws nothing: their stderr is empty)."""
    terminal, its_end = os.openpty()
    try:  # a dozen drawings: far less than a pty holds, so the command never waits on it
        done = run_command(
            "--limit", "2", "--out", str(tmp_path / "tty"), cwd=tmp_path, stderr=its_end
        )
    finally:
        os.close(its_end)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO: the terminal's other end is closed, all read
        while chunk := os.read(terminal, 4096):
            drawn += chunk
    os.close(terminal)
    assert done.returncode == 0
    total = 2 * 6
    lines = drawn.decode().replace("\r\n", "\n").split("\r")
    assert lines[0] == ""  # each drawing starts at the line's start, over the one before
    assert lines[1] == f"[{'#' * 2}{'.' * 28}] 1/{total}"
    assert lines[-1] == f"[{'#' * 30}] {total}/{total}\n"
    assert len(lines) == total + 1


def results_of(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_the_command_writes_its_report_and_resumes_without_asking_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_command("--out", str(out), "--limit", "20", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # not a terminal: no progress bar
    assert "default vs its best member" in first.stdout
    report = json.loads((out / "report.json").read_text())
    assert [row["contestant"] for row in report["rows"]] == [
        "default",
        *(f"default/{agent}" for agent in ("alpha", "beta", "gamma", "delta", "epsilon")),
    ]
    rows = results_of(out)
    assert len(rows) == 20 * 6
    answers = {
        json.loads(line)["id"]: json.loads(line)["answer"]
        for line in (ROOT / "examples/eval/arithmetic.jsonl").read_text().splitlines()
    }
    for row in rows:  # each row's verdict is the data set's answer against the reply's number
        said = re.findall(r"-?\d+", str(row["answer"]))
        assert row["correct"] == (bool(said) and said[-1] == answers[str(row["item"])])
    for summary in report["rows"]:
        mine = [r for r in rows if r["contestant"] == summary["contestant"]]
        assert summary["score"] == round(sum(bool(r["correct"]) for r in mine) / 20, 4)
    assert "<svg" in (out / "report.html").read_text()

    # Interrupted after 50 results, the last line cut: the rest is asked, nothing twice.
    kept = (out / "results.jsonl").read_text().splitlines()[:50]
    (out / "results.jsonl").write_text("\n".join(kept) + '\n{"contestant": "def')
    again = run_command("--out", str(out), "--limit", "20", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = [
        line
        for line in (out / "results.jsonl").read_text().splitlines()
        if line.startswith('{"contestant": "default')
    ]
    assert resumed[:50] == kept
    valid = [json.loads(line) for line in resumed if line.endswith("}")]
    assert len(valid) == 120
    assert len({(r["contestant"], r["item"]) for r in valid}) == 120


def test_the_budget_stops_before_it_is_passed_and_another_evaluation_is_refused(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    budget = 0.0005
    done = run_command(
        "--out", str(out), "--max-cost", str(budget), "--concurrency", "2", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["stopped_by_budget"] is True
    assert 0 < report["spent_usd"] <= budget
    assert 0 < len(results_of(out)) < 60 * 6
    assert "stopped by --max-cost" in done.stdout
    other = run_command("--out", str(out), "--scorer", "includes", cwd=tmp_path)
    assert other.returncode == 2
    assert "holds another evaluation" in other.stderr


@pytest.mark.parametrize("judge", [(), ("--judge", "alpha")], ids=["asking", "judging"])
def test_a_budget_below_one_question_spends_nothing_though_four_may_run_at_once(
    tmp_path: Path, judge: tuple[str, ...]
) -> None:
    """Each question is reckoned before it starts, the first ones too: none of the four
    that could start at once fits, so none starts (and the judge is not asked)."""
    out = tmp_path / "out"
    budget = 0.00001
    args = ("--out", str(out), "--max-cost", str(budget), "--concurrency", "4", "--limit", "4")
    done = run_command(*args, *judge, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["stopped_by_budget"], report["spent_usd"]) == (True, 0)
    assert results_of(out) == []
    assert not (out / "judgements.jsonl").exists()
    assert "stopped by --max-cost after spending $0.0000" in done.stdout


async def test_the_judge_spends_only_what_asking_left_of_the_budget(tmp_path: Path) -> None:
    """The budget covers asking and one judgement at most: the judge, four at once, stops
    after what fits, and asking and judging together stay within it."""
    ensemble = the_ensemble()
    contestants = [Contestant("e", ensemble), Contestant("e", ensemble, ensemble.agents[0])]
    book = FolderBook(tmp_path)
    plan = Plan(QUESTIONS, contestants, "numeric", book, "https://llm.example.test/v1")
    model = AlwaysFirst()
    outcome = await evaluate(plan, model)
    assert ensemble.summarizer is not None
    judge = ensemble.summarizer
    # A judgement is reckoned at its prompt and the judge's reply at 1,000 tokens (it sets
    # no max_tokens): $0.01 and a little. Its call costs $0.002 (1,000 + 100 tokens).
    plan.max_cost_usd = outcome.spent_usd + 0.0115
    judging = await judge_pairs(
        plan, model, outcome.results, judge=judge, spent_usd=outcome.spent_usd
    )

    assert judging.stopped_by_budget
    assert len(judging.verdicts) == 1
    assert judging.spent_usd == pytest.approx(0.002)
    assert outcome.spent_usd + judging.spent_usd <= plan.max_cost_usd
    report = with_judgements(build_report(outcome, plan), judge.name, judging, seed=0)
    assert report["stopped_by_budget"] is True
    assert report["spent_usd"] == round(outcome.spent_usd + 0.002, 6)
    assert "stopped by --max-cost (while judging)" in table(report)


async def test_a_budget_with_a_model_nobody_prices_is_refused_before_anything_is_asked(
    tmp_path: Path,
) -> None:
    ensemble = the_ensemble().model_copy(update={"prices": {}})
    contestants = [Contestant("e", ensemble), Contestant("e", ensemble, ensemble.agents[0])]
    plan = Plan(QUESTIONS, contestants, "numeric", FolderBook(tmp_path), "https://x.test/v1")
    plan.max_cost_usd = 1.0
    model = TableModel()
    with pytest.raises(EvaluationError, match=r"'m' has none: price it in the ensemble file"):
        await evaluate(plan, model)
    assert model.calls == 0


class AlwaysFirst(TableModel):
    """A judge with the worst position bias: answer A, whatever A is."""

    def _text(self, request: ChatRequest) -> str:
        if "<answer_a>" in request.messages[-1].content:
            self.calls += 1
            return "A"
        return super()._text(request)


async def test_the_judge_asks_both_orders_so_a_bias_for_the_first_answer_cancels(
    tmp_path: Path,
) -> None:
    ensemble = the_ensemble()
    contestants = [Contestant("e", ensemble), Contestant("e", ensemble, ensemble.agents[0])]
    plan = Plan(
        QUESTIONS, contestants, "numeric", FolderBook(tmp_path), "https://llm.example.test/v1"
    )
    model = AlwaysFirst()
    outcome = await evaluate(plan, model)
    asked = model.calls
    assert ensemble.summarizer is not None
    verdicts = (await judge_pairs(plan, model, outcome.results, judge=ensemble.summarizer)).verdicts

    assert model.calls - asked == 2 * len(QUESTIONS)
    assert sorted({v.first for v in verdicts}) == ["ensemble", "member"]
    (rate,) = win_rates(verdicts, seed=0)
    # Every question split by the order: even, and said so.
    assert (rate.wins, rate.losses, rate.ties, rate.split) == (0, 0, 10, 10)
    assert rate.rate == 0.5
    # Asked again with the same folder: nothing is judged twice.
    again = await judge_pairs(plan, model, outcome.results, judge=ensemble.summarizer)
    assert model.calls - asked == 2 * len(QUESTIONS)
    assert len(again.verdicts) == len(verdicts)


def test_a_judge_that_prefers_one_answer_in_both_orders_gives_it_the_win() -> None:
    verdicts = [
        Verdict("e", "e/a", "q1", "ensemble", "A", 0.001),
        Verdict("e", "e/a", "q1", "member", "B", 0.001),  # the ensemble, second: still it
        Verdict("e", "e/a", "q2", "ensemble", "B", 0.001),
        Verdict("e", "e/a", "q2", "member", "A", 0.001),  # the member both times
        Verdict("e", "e/a", "q3", "ensemble", "TIE", 0.001),
        Verdict("e", "e/a", "q3", "member", "", 0.001),  # unreadable: not counted
    ]
    (rate,) = win_rates(verdicts, seed=0)
    assert (rate.questions, rate.wins, rate.losses, rate.unreadable) == (2, 1, 1, 1)
    assert rate.rate == 0.5
    assert rate.cost_usd == 0.006
