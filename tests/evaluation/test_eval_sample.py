"""The sample `make eval` runs: written by its generator (the same bytes every time), every
question answered right by the mock, and a vote of `mock:wrong` agents that beats its best
member by an interval above zero."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.make_eval_sample import write_sample
from service.evaluation.book import FolderBook
from service.evaluation.dataset import load_dataset
from service.evaluation.report import build_report, table
from service.evaluation.runner import Plan, contestants_of, evaluate
from service.evaluation.scoring import score
from service.llm import ChatMessage, ChatRequest, MockChatModel
from service.llm.mock import mock_reply
from service.resources import load_configured_ensembles
from service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "examples" / "eval"


def make_eval() -> tuple[Path, str]:
    """The data set and the scorer of the Makefile's `eval` recipe."""
    recipe = re.search(r"^eval:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    command = recipe.group(1).replace("\\\n", " ")
    dataset = re.search(r"(examples/eval/\S+\.jsonl)", command)
    assert dataset is not None
    scorer = re.search(r"--scorer (\w+)", command)
    return ROOT / dataset.group(1), scorer.group(1) if scorer else "includes"


def test_the_generator_writes_the_shipped_sample_again_byte_for_byte(tmp_path: Path) -> None:
    written = write_sample(tmp_path)
    assert [path.name for path in written] == ["arithmetic.jsonl", "sample.jsonl"]
    for path in written:
        assert path.read_bytes() == (SAMPLES / path.name).read_bytes(), path.name


def test_the_mock_answers_every_sample_question_right_and_mock_wrong_a_share_wrong() -> None:
    items = load_dataset(SAMPLES / "sample.jsonl")
    assert len(items) == 90
    assert sum(item.key.startswith("f") for item in items) == 30  # the factual ones

    def reply(model: str, question: str) -> str:
        messages = (ChatMessage("user", question),)
        return mock_reply(ChatRequest(model=model, messages=messages, caller="alpha"))

    for item in items:
        assert score(reply("mock", item.question), item.answers, "includes"), item
    wrong = [i for i in items if not score(reply("mock:wrong", i.question), i.answers, "includes")]
    assert 0.15 < len(wrong) / len(items) < 0.45
    assert {item.key[0] for item in wrong} == {"w", "f"}  # word problems and facts alike
    for item in load_dataset(SAMPLES / "arithmetic.jsonl"):
        assert score(reply("mock", item.question), item.answers, "numeric"), item


async def test_the_shipped_sample_shows_the_vote_better_than_its_best_member(
    tmp_path: Path,
) -> None:
    """What `make eval` prints, in-process: the vote's gain over its best member has a
    paired interval above zero."""
    dataset, scorer = make_eval()
    env = {"USE_LLM_MOCK": "true", "ENSEMBLE_FILE": str(SAMPLES / "ensemble.toml")}
    settings = load_settings(env, dotenv_path=None)
    contestants = contestants_of(load_configured_ensembles(settings), [])
    assert len(contestants) == 6  # the vote and its five agents alone
    plan = Plan(
        items=load_dataset(dataset),
        contestants=contestants,
        scorer=scorer,
        book=FolderBook(tmp_path),
        default_base_url=settings.llm_base_url,
        free=True,
    )
    outcome = await evaluate(plan, MockChatModel())
    report = build_report(outcome, plan, seed=0)

    (gain,) = report["gains"]
    assert gain["low"] > 0, gain
    scores = {row["contestant"]: row["score"] for row in report["rows"]}
    best = max(member for name, member in scores.items() if name != "default")
    assert round(scores["default"] - best, 4) == gain["difference"] > 0.1
    assert re.search(
        r"default vs its best member default/\w+: \+0\.\d\d .* \(better\)", table(report)
    )
