"""Every ensemble the README and examples/ show is one the service accepts as it stands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from trio.testing import MockClock

from service.ensemble import EnsembleError, load_ensembles, parse_ensemble, templates
from service.ensemble.model import STRATEGY_NAMES
from service.events import (
    AgentStarted,
    AnswerChosen,
    CouncilRanking,
    CouncilReview,
    Done,
    RoundStarted,
    VoteTally,
)
from service.limits import load_policy
from service.llm import MockChatModel
from service.resources import load_configured_ensemble
from service.settings import load_settings
from tests.unit.recorder import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
# The README shows ensembles, and one limits file (its sections are [default], [anonymous]...).
LIMITS_BLOCKS = [block for block in TOML_BLOCKS if block.lstrip().startswith("[default]")]
README_BLOCKS = [block for block in TOML_BLOCKS if block not in LIMITS_BLOCKS]
KEYS = {"OPENAI_API_KEY": "sk-test", "VLLM_API_KEY": "test", "LLM_KEY": "sk-test"}
ENSEMBLE_DOC = (ROOT / "docs" / "ensemble.md").read_text()
# Each strategy but the default has an example of its own, named after it.
STRATEGY_EXAMPLES = [name for name in STRATEGY_NAMES if name != "summarize"]


def test_there_are_examples_for_openai_ollama_and_vllm() -> None:
    assert {path.stem for path in EXAMPLES} >= {"openai", "ollama", "vllm", "mixed"}
    assert len(README_BLOCKS) >= 4


@pytest.mark.parametrize("block", README_BLOCKS)
def test_each_ensemble_in_the_readme_is_valid(block: str) -> None:
    # Prompt files named in the README are the ones in examples/.
    context = {"base_dir": ROOT / "examples", "files": {}}
    ensemble = parse_ensemble(block, source="README.md", context=context)
    assert ensemble.agents


def test_the_limits_in_the_readme_are_valid(tmp_path: Path) -> None:
    assert len(LIMITS_BLOCKS) == 1
    path = tmp_path / "limits.toml"
    path.write_text(LIMITS_BLOCKS[0])
    policy = load_policy(path)
    assert policy.tenant_budget("acme") == 5_000_000


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_each_example_starts_with_its_keys_set(path: Path) -> None:
    mock = path.stem.startswith("mock")
    env = {"ENSEMBLE_FILE": str(path), "USE_LLM_MOCK": "true" if mock else "false", **KEYS}
    ensemble = load_configured_ensemble(load_settings(env, dotenv_path=None))
    for member in ensemble.members:
        for target in ensemble.targets(member):
            assert target.endpoint is not None
            if not mock:
                assert target.endpoint.base_url.startswith(("http://", "https://"))


def test_each_strategy_has_an_example_named_after_it_that_names_no_model() -> None:
    for strategy in STRATEGY_EXAMPLES:
        path = ROOT / "examples" / f"{strategy}.toml"
        ensemble = parse_ensemble(path.read_text(), source=path.name)
        assert ensemble.strategy == strategy
        # No model and no provider: the mock as it stands, LLM_MODEL with a real one.
        assert all(m.model is None and m.provider is None for m in ensemble.members), strategy


# The steps each example's strategy announces (phase, round), first answers first.
STEPS = {
    "vote": [("answer", 0)],
    "usc": [("answer", 0), ("select", 1)],
    "council": [("answer", 0), ("review", 1)],
    "moa": [("answer", 0), ("layer", 1)],
    "debate": [("answer", 0), ("revise", 1), ("revise", 2)],
}


@pytest.mark.parametrize("strategy", STRATEGY_EXAMPLES)
async def test_each_strategy_example_runs_on_the_mock_with_the_calls_its_comment_says(
    autojump_clock: MockClock, strategy: str
) -> None:
    path = ROOT / "examples" / f"{strategy}.toml"
    env = {"ENSEMBLE_FILE": str(path), "USE_LLM_MOCK": "true"}
    ensemble = load_configured_ensemble(load_settings(env, dotenv_path=None))
    events = await run(ensemble, MockChatModel())  # type: ignore[arg-type]

    done = events.terminal
    assert isinstance(done, Done)
    assert [(e.step.phase, e.step.round) for e in events.of_type(RoundStarted)] == STEPS[strategy]
    summarizer = ensemble.summarizer
    wrote = summarizer is not None and done.summarizer == summarizer.name
    calls = len(events.of_type(AgentStarted)) + wrote
    assert calls == ensemble.calls_per_request
    assert f"{calls} calls per request" in path.read_text()
    if strategy == "vote":
        assert events.of_type(VoteTally)
    if strategy in ("vote", "usc"):
        (chosen,) = events.of_type(AnswerChosen)
        assert done.summarizer == chosen.agent
    if strategy == "usc":
        assert chosen.reason.startswith("the selector chose Response ")
    if strategy == "council":
        # The mock ranks as the default review prompt asks, so every ranking is read.
        reviews = events.of_type(CouncilReview)
        assert len(reviews) == len(ensemble.agents)
        assert all(review.ranking is not None for review in reviews)
        (ranking,) = events.of_type(CouncilRanking)
        assert all(rank.reviews > 0 for rank in ranking.ranking)


# Every default prompt but the agents' (`{{ message }}`, in the members' table).
DEFAULT_PROMPTS = [
    name
    for name in vars(templates)
    if name.startswith("DEFAULT_") and name.endswith("_PROMPT") and name != "DEFAULT_AGENT_PROMPT"
]


@pytest.mark.parametrize("name", DEFAULT_PROMPTS)
def test_docs_ensemble_md_quotes_each_default_prompt_as_the_service_has_it(name: str) -> None:
    prompt = getattr(templates, name)
    assert f"```jinja\n{prompt}\n```" in ENSEMBLE_DOC


AGENTS = """
[[agents]]
name = "a"
system_prompt = "A."

[[agents]]
name = "b"
system_prompt = "B."
"""
SUMMARIZER = """
[summarizer]
name = "s"
system_prompt = "S."
"""
ONE_AGENT = AGENTS.split('\n[[agents]]\nname = "b"')[0]
# Each refusal docs/ensemble.md shows, and a file that gets it.
REFUSALS = {
    "summarizer: required by strategy 'council' (its chairman)": 'strategy = "council"\n' + AGENTS,
    "strategy 'vote' has no summarizer (no call): remove it": 'strategy = "vote"\n'
    + AGENTS
    + SUMMARIZER,
    "strategy 'debate' has no summarizer (the last round's vote is the answer): remove it": (
        'strategy = "debate"\n[deliberation]\nfinal = "vote"\n' + AGENTS + SUMMARIZER
    ),
    "strategy 'usc' needs at least 2 agents": 'strategy = "usc"\n' + ONE_AGENT + SUMMARIZER,
    "deliberation.rounds is an option of strategy 'debate', not of 'moa'": (
        'strategy = "moa"\n[deliberation]\nrounds = 3\n' + AGENTS + SUMMARIZER
    ),
    "deliberation.max_shown_chars is an option of strategy 'usc' or 'council' or 'moa' or "
    "'debate', not of 'vote'": 'strategy = "vote"\n[deliberation]\nmax_shown_chars = 500\n'
    + AGENTS,
    ":3: deliberation.anonymise: Extra inputs are not permitted": (
        'strategy = "council"\n[deliberation]\nanonymise = false\n' + AGENTS + SUMMARIZER
    ),
    ":3: deliberation.rounds: Input should be less than or equal to 5": (
        'strategy = "debate"\n[deliberation]\nrounds = 9\n' + AGENTS + SUMMARIZER
    ),
    ":3: deliberation.review_prompt: unknown variable 'answer' (known: agent, answers, date, "
    "history, message, own, round, rounds)": (
        'strategy = "council"\n[deliberation]\nreview_prompt = "{{ answer }}"\n'
        + AGENTS
        + SUMMARIZER
    ),
    ":1: strategy: Input should be 'summarize', 'vote', 'usc', 'council', 'moa' or 'debate'": (
        'strategy = "concil"\n' + AGENTS + SUMMARIZER
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_each_refusal_docs_ensemble_md_shows_is_the_loaders_own_line(
    tmp_path: Path, refusal: str
) -> None:
    path = tmp_path / "ensemble.toml"
    path.write_text(REFUSALS[refusal])
    with pytest.raises(EnsembleError) as refused:
        load_ensembles(path)
    line = f"error: {refused.value}".replace(str(path), "ensemble.toml")
    expected = f"error: ensemble.toml{refusal}" if refusal[0] == ":" else None
    assert line == (expected or f"error: ensemble.toml: {refusal}")
    assert f"\n{line}\n" in ENSEMBLE_DOC
