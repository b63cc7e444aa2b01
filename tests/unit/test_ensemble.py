"""The ensemble file: the shipped one loads, and every mistake names the file and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.ensemble import (
    MAX_AGENTS,
    Ensemble,
    EnsembleError,
    Provider,
    load_ensemble,
    parse_ensemble,
)
from service.settings import DEFAULT_ENSEMBLE_FILE

SUMMARIZER = '[summarizer]\nname = "s"\nsystem_prompt = "combine"\n'
DEFAULT = Provider(base_url="http://default/v1", api_key_env="LLM_KEY")
PROVIDERS = """
[providers.openai]
base_url = "https://api.openai.com/v1/"
api_key_env = "OPENAI_API_KEY"
headers = { "OpenAI-Project" = "proj-1" }

[providers.ollama]
base_url = "http://localhost:11434/v1"
"""


def resolved(text: str) -> Ensemble:
    return parse_ensemble(text, source="e.toml").with_defaults(
        model="small", agent_timeout_s=30, default_provider=DEFAULT
    )


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
    ensemble = resolved(text)
    assert [(a.model, a.timeout_s) for a in ensemble.agents] == [("big", 5), ("small", 30)]
    assert ensemble.summarizer.model == "small"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[agents]\n", "e.toml: not valid TOML"),
        (SUMMARIZER, "e.toml: agents: Field required"),
        (agent("a"), "e.toml: summarizer: required by strategy 'summarize'"),
        (agent("a", "temprature = 1\n") + SUMMARIZER, "agents[0].temprature: Extra inputs"),
        (agent("a", "timeout_s = -1\n") + SUMMARIZER, "agents[0].timeout_s: Input should be"),
        (agent("has space") + SUMMARIZER, "agents[0].name: String should match pattern"),
        (agent("a") + agent("a") + SUMMARIZER, "the name 'a' is used twice"),
        (agent("s") + SUMMARIZER, "the name 's' is used twice"),
        ("min_agents = 2\n" + agent("a") + SUMMARIZER, "min_agents is 2 but only 1 agent"),
        (agent("a", 'provider = "nope"\n') + SUMMARIZER, "agents[0].provider: no provider"),
        (
            PROVIDERS
            + agent("a", 'fallback_models = [{ model = "m", provider = "x" }]\n')
            + SUMMARIZER,
            "agents[0].fallback_models[0].provider: no provider named 'x' (ollama, openai)",
        ),
        (
            PROVIDERS + agent("a", 'provider = "ollama"\nbase_url = "http://h/v1"\n') + SUMMARIZER,
            "agents[0]: give either provider or base_url, not both",
        ),
        (agent("a", 'api_key_env = "K"\n') + SUMMARIZER, "api_key_env needs base_url"),
        (agent("a", 'base_url = "ftp://h"\n') + SUMMARIZER, "agents[0].base_url: expected an"),
        (
            agent("a", 'base_url = "http://h"\napi_key_env = "sk-abc"\n') + SUMMARIZER,
            "agents[0].api_key_env: String should match pattern",
        ),
        (
            agent("a", 'headers = { Authorization = "Bearer sk-1" }\n') + SUMMARIZER,
            "name the environment variable that holds the key with api_key_env",
        ),
        (
            agent("a", 'headers = { x-api-key = "k-1" }\n') + SUMMARIZER,
            "name the environment variable that holds the key with api_key_env",
        ),
        (
            agent("a", 'headers = { Content-Length = "5" }\n') + SUMMARIZER,
            "is set by the HTTP client and cannot be changed",
        ),
        (agent("a", 'headers = { X-Team = "équipe" }\n') + SUMMARIZER, "headers.X-Team"),
        (agent("a", 'headers = { X-Team = " padded" }\n') + SUMMARIZER, "headers.X-Team"),
        (agent("a", 'headers = { X-Team = "a\\tb" }\n') + SUMMARIZER, "headers.X-Team"),
        (agent("a", "temperature = 3\n") + SUMMARIZER, "agents[0].temperature: Input should be"),
        (agent("a", "max_tokens = 0\n") + SUMMARIZER, "agents[0].max_tokens: Input should be"),
        (agent("a", "hedge_after_ms = 0\n") + SUMMARIZER, "agents[0].hedge_after_ms"),
        (agent("a") + SUMMARIZER + "hedge_after_ms = 5\n", "summarizer.hedge_after_ms: Extra"),
        ("straggler_grace_ms = -1\n" + agent("a") + SUMMARIZER, "straggler_grace_ms: Input"),
        (
            "".join(agent(f"a{i}") for i in range(MAX_AGENTS + 1)) + SUMMARIZER,
            "agents: Tuple should have at most 16 items",
        ),
    ],
)
def test_an_invalid_file_names_the_file_the_field_and_the_problem(text: str, says: str) -> None:
    with pytest.raises(EnsembleError) as caught:
        parse_ensemble(text, source="e.toml")
    assert re.match(r"e\.toml(:\d+)?: ", str(caught.value))
    assert says in str(caught.value)


def test_a_missing_file_is_an_ensemble_error(tmp_path: Path) -> None:
    with pytest.raises(EnsembleError, match="cannot read the ensemble file"):
        load_ensemble(tmp_path / "absent.toml")


def test_members_reach_named_inline_and_default_providers_with_fallbacks_in_order() -> None:
    text = (
        PROVIDERS
        + agent(
            "cloud",
            'provider = "openai"\nmodel = "gpt-4o-mini"\ntemperature = 0.2\nmax_tokens = 300\n'
            'fallback_models = ["gpt-4o", { provider = "ollama", model = "llama3.2" }]\n'
            "hedge_after_ms = 1500\n",
        )
        + agent("local", 'base_url = "http://127.0.0.1:8000/v1"\nmodel = "qwen"\n')
        + agent("plain")
        + SUMMARIZER
        + 'provider = "ollama"\nmodel = "llama3.2"\nfallback_models = ["mistral"]\n'
    )
    ensemble = resolved(text)
    cloud, local, plain = ensemble.agents

    targets = ensemble.targets(cloud)
    assert [(t.endpoint.name, t.model) for t in targets] == [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("ollama", "llama3.2"),
    ]
    openai = targets[0].endpoint
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert openai.headers == (("OpenAI-Project", "proj-1"),)
    assert (cloud.temperature, cloud.max_tokens, cloud.hedge_after_ms) == (0.2, 300, 1500)

    (inline,) = ensemble.targets(local)
    assert (inline.endpoint.base_url, inline.model) == ("http://127.0.0.1:8000/v1", "qwen")
    assert inline.endpoint.api_key_env is None
    (default,) = ensemble.targets(plain)
    assert (default.endpoint.name, default.endpoint.base_url) == ("default", "http://default/v1")
    assert [(t.endpoint.name, t.model) for t in ensemble.targets(ensemble.summarizer)] == [
        ("ollama", "llama3.2"),
        ("ollama", "mistral"),
    ]
    # One endpoint per provider: equal endpoints share one connection pool.
    assert ensemble.targets(ensemble.summarizer)[0].endpoint == targets[2].endpoint
    assert set(ensemble.used_providers()) == {"openai", "ollama", "inline:local", "default"}


def test_a_providers_default_table_replaces_the_settings_server() -> None:
    text = '[providers.default]\nbase_url = "http://gateway:4000/v1"\n' + agent("a") + SUMMARIZER
    ensemble = resolved(text)
    assert ensemble.targets(ensemble.agents[0])[0].endpoint.base_url == "http://gateway:4000/v1"


def test_quorum_settings_default_to_every_answer_and_no_grace() -> None:
    ensemble = resolved(agent("a") + agent("b") + SUMMARIZER)
    assert (ensemble.min_agents, ensemble.straggler_grace_ms) == (1, None)
    ensemble = resolved(
        "min_agents = 2\nstraggler_grace_ms = 250\n" + agent("a") + agent("b") + SUMMARIZER
    )
    assert (ensemble.min_agents, ensemble.straggler_grace_ms) == (2, 250)


def test_header_values_may_hold_inner_spaces() -> None:
    ensemble = resolved(agent("a", 'headers = { X-Team = "red team" }\n') + SUMMARIZER)
    assert ensemble.agents[0].headers == {"X-Team": "red team"}


def test_targets_are_right_even_after_an_earlier_look_at_the_unresolved_file() -> None:
    parsed = parse_ensemble(
        agent("a", 'base_url = "http://127.0.0.1:8000/v1"\n') + SUMMARIZER, source="e.toml"
    )
    assert parsed.targets(parsed.summarizer)[0].endpoint is None
    ensemble = parsed.with_defaults(model="m", agent_timeout_s=30, default_provider=DEFAULT)
    assert ensemble.targets(ensemble.agents[0])[0].endpoint is not None
    assert ensemble.targets(ensemble.summarizer)[0].endpoint is not None


@pytest.mark.parametrize(("length", "accepted"), [(200, True), (201, False)])
def test_a_model_name_may_be_up_to_200_characters(length: int, accepted: bool) -> None:
    name = "m" * length
    fallback = f'fallback_models = ["{name}"]\n'
    for keys in (f'model = "{name}"\n', fallback):
        text = agent("a", keys) + SUMMARIZER
        if accepted:
            ensemble = resolved(text)
            assert name in [t.model for t in ensemble.targets(ensemble.agents[0])]
        else:
            with pytest.raises(EnsembleError, match="at most 200 characters"):
                parse_ensemble(text, source="e.toml")


def test_a_providers_connection_pool_holds_1000_unless_set() -> None:
    text = (
        '[providers.big]\nbase_url = "http://big/v1"\n'
        '[providers.small]\nbase_url = "http://small/v1"\nmax_connections = 5\n'
        + agent("a", 'provider = "big"\n')
        + agent("b", 'provider = "small"\n')
        + SUMMARIZER
    )
    ensemble = resolved(text)
    pools = [ensemble.targets(a)[0].endpoint.max_connections for a in ensemble.agents]
    assert pools == [1000, 5]


@pytest.mark.parametrize(
    ("size", "accepted"), [(1, True), (100_000, True), (0, False), (100_001, False)]
)
def test_max_connections_is_between_1_and_100000(size: int, accepted: bool) -> None:
    text = f'[providers.p]\nbase_url = "http://p/v1"\nmax_connections = {size}\n'
    text += agent("a", 'provider = "p"\n') + SUMMARIZER
    if accepted:
        assert resolved(text).providers["p"].max_connections == size
    else:
        with pytest.raises(EnsembleError, match=r"providers\.p\.max_connections"):
            parse_ensemble(text, source="e.toml")
