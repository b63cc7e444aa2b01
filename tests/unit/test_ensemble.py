"""The ensemble file: the shipped one loads, and every mistake names the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.ensemble import MAX_AGENTS, EnsembleError, load_ensemble, parse_ensemble
from service.settings import DEFAULT_ENSEMBLE_FILE

SUMMARIZER = '[summarizer]\nname = "s"\nsystem_prompt = "combine"\n'


def agent(name: str, extra: str = "") -> str:
    return f'[[agents]]\nname = "{name}"\nsystem_prompt = "p"\n{extra}'


def test_the_shipped_ensemble_has_a_creative_and_a_factual_agent() -> None:
    ensemble = load_ensemble(DEFAULT_ENSEMBLE_FILE)
    assert [a.name for a in ensemble.agents] == ["llm-1", "llm-2"]
    assert "creative" in ensemble.agents[0].system_prompt
    assert "factual" in ensemble.agents[1].system_prompt
    assert ensemble.summarizer.name == "llm-combine"


def test_defaults_fill_model_and_timeout_but_keep_explicit_values() -> None:
    text = agent("a", 'model = "big"\ntimeout_s = 5\n') + agent("b") + SUMMARIZER
    ensemble = parse_ensemble(text, source="e.toml").with_defaults(
        model="small", agent_timeout_s=30
    )
    assert [(a.model, a.timeout_s) for a in ensemble.agents] == [("big", 5), ("small", 30)]
    assert ensemble.summarizer.model == "small"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[agents]\n", "e.toml: not valid TOML"),
        (SUMMARIZER, "e.toml: agents: Field required"),
        (agent("a"), "e.toml: summarizer: Field required"),
        (agent("a", "temprature = 1\n") + SUMMARIZER, "agents[0].temprature: Extra inputs"),
        (agent("a", "timeout_s = -1\n") + SUMMARIZER, "agents[0].timeout_s: Input should be"),
        (agent("has space") + SUMMARIZER, "agents[0].name: String should match pattern"),
        (agent("a") + agent("a") + SUMMARIZER, "the name 'a' is used twice"),
        (agent("s") + SUMMARIZER, "the name 's' is used twice"),
        (
            "".join(agent(f"a{i}") for i in range(MAX_AGENTS + 1)) + SUMMARIZER,
            "agents: Tuple should have at most 16 items",
        ),
    ],
)
def test_an_invalid_file_names_the_file_the_field_and_the_problem(text: str, says: str) -> None:
    with pytest.raises(EnsembleError) as caught:
        parse_ensemble(text, source="e.toml")
    assert str(caught.value).startswith("e.toml: ")
    assert says in str(caught.value)


def test_a_missing_file_is_an_ensemble_error(tmp_path: Path) -> None:
    with pytest.raises(EnsembleError, match="cannot read the ensemble file"):
        load_ensemble(tmp_path / "absent.toml")
