"""Startup checks that need the settings and the ensemble together: keys, mock models."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.ensemble import EnsembleError
from service.llm import MockChatModel
from service.llm.router import ProviderRouter
from service.resources import build_model, load_configured_ensemble
from service.settings import SettingsError, load_settings
from tests.unit.test_layers import loaded_of

AGENT = '[[agents]]\nname = "a"\nsystem_prompt = "p"\n'
SUMMARIZER = '[summarizer]\nname = "s"\nsystem_prompt = "combine"\n'
OPENAI = (
    '[providers.openai]\nbase_url = "https://api.openai.com/v1"\napi_key_env = "OPENAI_API_KEY"\n'
)


def settings_for(tmp_path: Path, ensemble: str, **env: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "ensemble.toml"
    path.write_text(ensemble)
    return load_settings({"ENSEMBLE_FILE": str(path), **env}, dotenv_path=None)


def test_real_calls_to_a_public_default_server_need_llm_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, AGENT + SUMMARIZER, USE_LLM_MOCK="false")
    with pytest.raises(SettingsError, match="LLM_KEY is required"):
        load_configured_ensemble(settings)


def test_a_local_default_server_needs_no_key(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        AGENT + SUMMARIZER,
        USE_LLM_MOCK="false",
        LLM_BASE_URL="http://localhost:11434/v1",
    )
    ensemble = load_configured_ensemble(settings)
    target = ensemble.targets(ensemble.agents[0])[0]
    assert target.endpoint.base_url == "http://localhost:11434/v1"
    assert target.endpoint.api_key_env is None
    assert isinstance(build_model(settings), ProviderRouter)


def test_credentials_in_the_default_url_never_reach_the_error(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        AGENT + SUMMARIZER,
        USE_LLM_MOCK="false",
        LLM_BASE_URL="https://user:sk-123@api.example.com/v1",
    )
    with pytest.raises(SettingsError) as caught:
        load_configured_ensemble(settings)
    assert "sk-123" not in str(caught.value)
    assert "https://***@api.example.com/v1" in str(caught.value)


def test_a_named_providers_key_variable_must_be_set(tmp_path: Path) -> None:
    text = OPENAI + AGENT + 'provider = "openai"\n' + SUMMARIZER + 'provider = "openai"\n'
    settings = settings_for(tmp_path, text, USE_LLM_MOCK="false")
    with pytest.raises(EnsembleError) as caught:
        load_configured_ensemble(settings)
    assert "'openai'" in str(caught.value)
    assert "OPENAI_API_KEY" in str(caught.value)
    # Nobody uses the default server here, so LLM_KEY is not asked for.
    settings = settings_for(tmp_path, text, USE_LLM_MOCK="false", OPENAI_API_KEY="sk-1")
    ensemble = load_configured_ensemble(settings)
    assert set(ensemble.used_providers()) == {"openai"}


def test_a_provider_only_a_fallback_uses_must_have_its_key_too(tmp_path: Path) -> None:
    fallback = 'fallback_models = [{ provider = "openai", model = "gpt-4o" }]\n'
    text = OPENAI + AGENT + fallback + SUMMARIZER
    env = {"USE_LLM_MOCK": "false", "LLM_BASE_URL": "http://localhost:11434/v1"}
    settings = settings_for(tmp_path, text, **env)
    with pytest.raises(EnsembleError) as caught:
        load_configured_ensemble(settings)
    assert "the provider 'openai' reads its key from OPENAI_API_KEY" in str(caught.value)
    settings = settings_for(tmp_path, text, **env, OPENAI_API_KEY="sk-1")
    assert set(load_configured_ensemble(settings).used_providers()) == {"default", "openai"}


def test_the_mock_needs_no_keys_and_knows_its_fault_models(tmp_path: Path) -> None:
    text = OPENAI + AGENT + 'provider = "openai"\nmodel = "mock:stall"\n' + SUMMARIZER
    settings = settings_for(tmp_path, text)
    assert load_configured_ensemble(settings).agents[0].model == "mock:stall"
    assert isinstance(build_model(settings), MockChatModel)

    settings = settings_for(tmp_path, AGENT + 'model = "mock:explode"\n' + SUMMARIZER)
    with pytest.raises(EnsembleError, match="the mock knows no model 'mock:explode'"):
        load_configured_ensemble(settings)


def test_a_key_with_a_trailing_newline_is_used_without_it(tmp_path: Path) -> None:
    text = OPENAI + AGENT + 'provider = "openai"\n' + SUMMARIZER + 'provider = "openai"\n'
    settings = settings_for(tmp_path, text, USE_LLM_MOCK="false", OPENAI_API_KEY="sk-1\n")
    load_configured_ensemble(settings)
    assert settings.secret("OPENAI_API_KEY") == "sk-1"


@pytest.mark.parametrize("key", ["sk 1", "sk-é", "sk-1\x07"])
def test_a_key_no_header_can_carry_stops_the_start_without_showing_it(
    tmp_path: Path, key: str
) -> None:
    text = OPENAI + AGENT + 'provider = "openai"\n' + SUMMARIZER + 'provider = "openai"\n'
    settings = settings_for(tmp_path, text, USE_LLM_MOCK="false", OPENAI_API_KEY=key)
    with pytest.raises(SettingsError) as caught:
        load_configured_ensemble(settings)
    assert str(caught.value).startswith("OPENAI_API_KEY: ")
    assert key not in str(caught.value)


# What a start loads decides how long it takes: a third of it was the openai SDK, which a
# service on the mock never calls; PyJWT and cryptography serve AUTH=jwt alone.
A_START = """
from service.__main__ import main
from service.process.start import serve
from service.process.server import run_server
from service.resources import build_model
from service.settings import load_settings
build_model(load_settings({"USE_LLM_MOCK": "{mock}", "LLM_BASE_URL": "http://localhost:1/v1"},
                          dotenv_path=None))
"""


@pytest.mark.parametrize(("mock", "loaded"), [("true", []), ("false", ["openai"])])
def test_a_start_loads_the_openai_sdk_only_for_a_provider_and_pyjwt_only_for_jwt(
    mock: str, loaded: list[str]
) -> None:
    code = A_START.replace("{mock}", mock)
    assert loaded_of(code, ("openai", "jwt", "cryptography")) == loaded
