"""Settings: defaults, parsing, .env under the real environment, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import BindAddress, SettingsError, load_settings
from service.urls import is_local_url, redact_url


def test_defaults_serve_the_mock_on_port_8080() -> None:
    settings = load_settings({}, dotenv_path=None)
    assert settings.use_llm_mock is True
    assert settings.http_addr == BindAddress("0.0.0.0", 8080)
    assert settings.log_level == "info"
    assert settings.ensemble_file.is_file()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":9000", BindAddress("0.0.0.0", 9000)),
        ("127.0.0.1:81", BindAddress("127.0.0.1", 81)),
        ("localhost:0", BindAddress("localhost", 0)),
        ("[::1]:8080", BindAddress("::1", 8080)),
    ],
)
def test_http_addr_accepts_port_and_host_port(value: str, expected: BindAddress) -> None:
    assert load_settings({"HTTP_ADDR": value}, dotenv_path=None).http_addr == expected


def test_ipv6_bind_is_bracketed_for_hypercorn() -> None:
    assert BindAddress("::1", 8080).for_hypercorn() == "[::1]:8080"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("HTTP_ADDR", "8080", "HTTP_ADDR='8080': expected ':port' or 'host:port'"),
        ("HTTP_ADDR", ":99999", "HTTP_ADDR=':99999'"),
        ("USE_LLM_MOCK", "maybe", "USE_LLM_MOCK='maybe': expected true or false"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud': expected one of debug, info"),
        ("AGENT_TIMEOUT_S", "0", "AGENT_TIMEOUT_S='0'"),
        ("AGENT_TIMEOUT_S", "soon", "AGENT_TIMEOUT_S='soon'"),
        ("LLM_BASE_URL", "ftp://x", "LLM_BASE_URL='ftp://x': expected an http:// or https://"),
        ("ENSEMBLE_FILE", "/nonexistent.toml", "ENSEMBLE_FILE='/nonexistent.toml': no such file"),
        ("LLM_BASE_URL", "http://h:99999/v1", "LLM_BASE_URL='http://h:99999/v1': the port must"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_is_allowed(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value}, dotenv_path=None)
    assert str(caught.value).startswith(says)
    assert "\n" not in str(caught.value)


def test_any_variable_can_be_read_as_a_secret_but_none_is_shown(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPENAI_API_KEY=sk-from-file\nOTHER_KEY=from-file\n")
    settings = load_settings({"OTHER_KEY": "from-env", "LLM_KEY": "sk-llm"}, dotenv_path=dotenv)
    assert settings.secret("OPENAI_API_KEY") == "sk-from-file"
    assert settings.secret("OTHER_KEY") == "from-env"
    assert settings.secret("LLM_KEY") == "sk-llm"
    assert settings.secret("ABSENT_KEY") == ""
    assert "sk-from-file" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:11434/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://10.1.2.3/v1", True),
        ("http://ollama:11434/v1", True),
        ("http://gpu-box.internal/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://8.8.8.8/v1", False),
    ],
)
def test_local_servers_are_recognised(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_dotenv_fills_in_but_the_real_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("LOG_LEVEL=debug\nHTTP_ADDR=:7000\nMAX_MESSAGE_CHARS=10\n")
    settings = load_settings({"HTTP_ADDR": ":7001"}, dotenv_path=dotenv)
    assert settings.log_level == "debug"
    assert settings.http_addr.port == 7001
    assert settings.max_message_chars == 10


def test_an_empty_value_means_unset() -> None:
    assert load_settings({"LLM_MODEL": ""}, dotenv_path=None).llm_model == "mock"


def test_the_mock_answers_as_mock_unless_llm_model_is_set() -> None:
    assert load_settings({}, dotenv_path=None).llm_model == "mock"
    chosen = load_settings({"LLM_MODEL": "llama3.2"}, dotenv_path=None)
    assert (chosen.use_llm_mock, chosen.llm_model) == (True, "llama3.2")
    real = load_settings({"USE_LLM_MOCK": "false", "LLM_KEY": "sk-x"}, dotenv_path=None)
    assert real.llm_model == "gpt-4o-mini"


def test_credentials_in_a_url_are_redacted() -> None:
    assert redact_url("https://user:sk-123@api.example.com/v1") == "https://***@api.example.com/v1"
    assert redact_url("https://h/v1?api-key=sk-1") == "https://h/v1?***"
    assert redact_url("https://h/v1") == "https://h/v1"


def test_the_key_is_hidden_in_the_settings_repr() -> None:
    settings = load_settings({"LLM_KEY": "sk-very-secret"}, dotenv_path=None)
    assert "sk-very-secret" not in repr(settings)
    assert settings.llm_key.get_secret_value() == "sk-very-secret"
