"""Every setting of the service, read once from the environment and `.env`, validated at start.

The real environment wins over `.env`. A bad value raises `SettingsError` with one line that
names the variable and what is allowed, so `python -m service` can stop with that line:

    settings = load_settings()            # reads os.environ and ./.env
    settings = load_settings({"HTTP_ADDR": ":9000"}, dotenv_path=None)   # tests
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .client_address import ForwardedHeader, parse_forwarded_header, parse_networks
from .urls import check_base_url, redact_url

DEFAULT_ENSEMBLE_FILE = Path(__file__).parent / "ensemble" / "default.toml"
# LLM_MODEL when it is not set: the mock answers as what it is, a real provider gets this.
MOCK_MODEL = "mock"
DEFAULT_MODEL = "gpt-4o-mini"
_BOOL = TypeAdapter(bool)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
PositiveSeconds = Annotated[float, Field(gt=0)]


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line meant for an operator."""


@dataclass(frozen=True)
class BindAddress:
    host: str
    port: int

    def for_hypercorn(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_http_addr(value: str) -> BindAddress:
    """Parse `:8080`, `0.0.0.0:8080`, `localhost:8080` or `[::1]:8080`."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("expected ':port' or 'host:port' with a port from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 host in brackets, e.g. '[::1]:8080'")
    return BindAddress(host=host or "0.0.0.0", port=int(port_text))


class Settings(BaseModel):
    """The typed settings. Field names are the environment variable names in lower case."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    llm_key: SecretStr = SecretStr("")
    use_llm_mock: bool = True
    log_level: LogLevel = "info"
    production: bool = False
    http_addr: BindAddress = Field(default_factory=lambda: parse_http_addr(":8080"))
    llm_base_url: str = "https://api.openai.com/v1"
    # Unset: MOCK_MODEL with the mock on, else DEFAULT_MODEL (see _default_model).
    llm_model: str = Field(default=DEFAULT_MODEL, min_length=1)
    ensemble_file: Path = DEFAULT_ENSEMBLE_FILE
    # How often the ensemble files are checked for changes; 0 turns watching off (SIGHUP
    # still reloads).
    ensemble_reload_s: Annotated[float, Field(ge=0)] = 1.0
    agent_timeout_s: PositiveSeconds = 30.0
    request_timeout_s: PositiveSeconds = 120.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 10.0
    max_message_chars: Annotated[int, Field(ge=1)] = 32_000
    sse_keepalive_s: PositiveSeconds = 15.0
    # Agents stream their answers as `agent.delta` events (a request's `stream_agents`
    # decides for itself); pieces within AGENT_DELTA_MS, or up to AGENT_DELTA_MAX_CHARS,
    # leave as one event.
    stream_agents: bool = True
    agent_delta_ms: Annotated[float, Field(ge=0)] = 50.0
    agent_delta_max_chars: Annotated[int, Field(ge=1)] = 512
    # Where /v1/chat/completions puts the agents' work: `reasoning_content` (DeepSeek, vLLM),
    # `reasoning`, `think` (<think> tags in content) or `off`.
    openai_reasoning: Literal["reasoning_content", "reasoning", "think", "off"] = (
        "reasoning_content"
    )
    # A write to a client that makes no progress for this long (it stopped reading) closes
    # its connection.
    send_timeout_s: PositiveSeconds = 30.0
    # Connections the kernel holds for us before we accept them. Hypercorn's 100 resets
    # clients in a burst (500 at once); the kernel caps it at net.core.somaxconn.
    listen_backlog: Annotated[int, Field(ge=1, le=65535)] = 4096
    # Traces go out over OTLP/HTTP when either is set; the SDK reads the other OTEL_* variables.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    mock_first_token_ms: Annotated[float, Field(ge=0)] = 250.0
    mock_token_ms: Annotated[float, Field(ge=0)] = 25.0
    # Where conversations are kept: an SQLite file (the default, made on first start), a
    # PostgreSQL URL (postgresql+psycopg://...), or "none" to keep nothing.
    database_url: SecretStr = SecretStr("sqlite:///data/fanout.db")
    # The earlier turns of a conversation that a follow-up sees, newest first, at most this
    # many characters of questions and summaries.
    history_max_chars: Annotated[int, Field(ge=0)] = 24_000
    # Conversations untouched for longer are deleted; unset keeps everything.
    retention_days: Annotated[float, Field(gt=0)] | None = None
    # This instance's name in the database: its running messages turn `interrupted` when its
    # heartbeat stops, or when a process of the same name starts. Default: host and port.
    instance_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    heartbeat_s: PositiveSeconds = 5.0
    # Who may call: "none" (everyone is `anonymous`), "keys", "jwt" or "keys,jwt".
    auth: str = "none"
    # With PRODUCTION=true, AUTH=none refuses to start unless this is set on purpose.
    allow_anonymous: bool = False
    # Failed sign-ins (a key or token presented and refused) per client address: this many
    # at once, then one per AUTH_FAILURE_EVERY_S; beyond, 429.
    auth_failure_burst: Annotated[int, Field(ge=1)] = 20
    auth_failure_every_s: PositiveSeconds = 3.0
    # How long a key's lookup is trusted: a revoked key stops working within this bound.
    auth_cache_s: Annotated[float, Field(ge=0)] = 5.0
    jwt_jwks_url: str | None = None
    # A PEM public key (or a path to one), or a shared secret for HS256; one of these three.
    jwt_public_key: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Dotted paths into the token's claims, e.g. `realm_access.roles`.
    jwt_tenant_claim: str | None = None
    jwt_roles_claim: str | None = None
    jwt_admin_role: str = "admin"
    jwt_leeway_s: Annotated[float, Field(ge=0, le=300)] = 30.0
    # How often the JWKS is fetched again, and at most how often an unknown `kid` makes it.
    jwt_jwks_refresh_s: Annotated[float, Field(gt=0)] = 300.0
    jwt_jwks_min_refetch_s: Annotated[float, Field(ge=0)] = 30.0
    # A bearer token that may read /metrics (for a scraper), besides admins.
    metrics_token: SecretStr | None = None
    # TOML: model -> input / output price per million tokens; adds cost to usage reports.
    prices_file: Path | None = None
    # Rate limits and token budgets per caller (TOML); unset: no limits.
    limits_file: Path | None = None
    # Redis for limits shared by every instance (and the live relay between them); unset:
    # limits in each process's memory.
    redis_url: SecretStr | None = None
    # When Redis does not answer within RATE_LIMIT_TIMEOUT_S: admit ("open") or refuse.
    rate_limit_on_error: Literal["open", "closed"] = "open"
    rate_limit_timeout_s: PositiveSeconds = 0.25
    # A stream's concurrency slot is a lease this long, renewed while it runs: the slots of
    # an instance that died free themselves within it.
    stream_lease_s: PositiveSeconds = 30.0
    # Proxies whose FORWARDED_HEADER is believed (CIDRs, comma-separated).
    trusted_proxies: str = ""
    # The one header the trusted proxies write the client's address in: X-Forwarded-For or
    # Forwarded. The other is never read (a proxy passes it through from the client).
    forwarded_header: ForwardedHeader = "X-Forwarded-For"
    # The data sets an admin may name for an evaluation the server runs (POST /admin/evals):
    # each NAME.jsonl or NAME.csv in this directory.
    eval_datasets_dir: Path = Path("examples/eval")
    # Evaluations one user may have running at once (on every instance together).
    eval_max_running: Annotated[int, Field(ge=1, le=100)] = 2
    # Worker processes sharing one listening port; 1 serves in this process.
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    # Internal, not for operators: with WORKERS > 1 the parent starts each worker with the
    # listening socket it bound and one end of a socket pair to itself (see __main__).
    fanout_listen_fd: int | None = None
    fanout_parent_fd: int | None = None
    fanout_worker_number: int | None = None

    # The whole environment, for the API keys an ensemble names by variable (`api_key_env`).
    _environ: dict[str, str] = PrivateAttr(default_factory=dict)

    def secret(self, name: str) -> str:
        """The value of environment variable `name` (from the environment or `.env`), or "".

        Surrounding whitespace is dropped: a key read from a secret file often ends in a newline.
        """
        if name == "LLM_KEY":
            return self.llm_key.get_secret_value().strip()
        return self._environ.get(name, "").strip()

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """With the mock on and no LLM_MODEL, members answer as `mock`: nothing (the page, the
        `done` event, usage) claims a real model answered. An LLM_MODEL set is kept."""
        if not isinstance(data, dict) or "llm_model" in data:
            return data
        try:
            mock = _BOOL.validate_python(data.get("use_llm_mock", True))
        except ValidationError:
            return data  # USE_LLM_MOCK's own check names the problem
        return {**data, "llm_model": MOCK_MODEL} if mock else data

    @field_validator("http_addr", mode="before")
    @classmethod
    def _parse_http_addr(cls, value: object) -> object:
        return parse_http_addr(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("llm_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return check_base_url(value)

    @property
    def auth_modes(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.auth.split(",") if part.strip()) - {"none"}

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: str) -> str:
        modes = {part.strip().lower() for part in value.split(",") if part.strip()}
        if (
            not modes
            or not modes <= {"none", "keys", "jwt"}
            or ("none" in modes and len(modes) > 1)
        ):
            raise ValueError('expected "none", "keys", "jwt" or "keys,jwt"')
        return ",".join(sorted(modes))

    @property
    def storage_enabled(self) -> bool:
        return self.database_url.get_secret_value().strip().lower() != "none"

    @property
    def instance_name(self) -> str:
        if self.instance_id is not None:
            return self.instance_id
        name = f"{socket.gethostname()}:{self.http_addr.port}"
        if self.fanout_worker_number is not None:
            name += f"/{self.fanout_worker_number}"
        return name[:64]

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("forwarded_header", mode="before")
    @classmethod
    def _check_forwarded_header(cls, value: object) -> object:
        return parse_forwarded_header(value) if isinstance(value, str) else value

    @field_validator("limits_file")
    @classmethod
    def _check_limits_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("prices_file")
    @classmethod
    def _check_prices_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("ensemble_file")
    @classmethod
    def _check_ensemble_file(cls, value: Path) -> Path:
        if not value.is_file() and not value.is_dir():
            raise ValueError(f"no such file or directory: {value}")
        return value


_ALLOWED = {
    "bool_parsing": "expected true or false",
    "literal_error": "expected one of debug, info, warning, error, critical",
}


def _describe(error: Mapping[str, Any]) -> str:
    message = _ALLOWED.get(str(error["type"]), str(error["msg"]))
    return message.removeprefix("Value error, ")


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv_path: Path | None = Path(".env")
) -> Settings:
    """Read settings from `environ` (default `os.environ`) over the values in `dotenv_path`."""
    from_file = dotenv_values(dotenv_path) if dotenv_path and dotenv_path.is_file() else {}
    merged = {**from_file, **(os.environ if environ is None else environ)}
    names = {name.upper() for name in Settings.model_fields}
    # An empty value means "unset", as it does in most .env files and docker-compose files.
    values = {k.lower(): v for k, v in merged.items() if k in names and v not in (None, "")}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        shown = redact_url(str(values.get(name.lower(), "")))
        raise SettingsError(f"{name}={shown!r}: {_describe(first)}") from exc
    settings._environ = {k: v for k, v in merged.items() if v}
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """Settings that are each valid but do not work together: one line naming them."""
    modes = settings.auth_modes
    if settings.production and not modes and not settings.allow_anonymous:
        raise SettingsError(
            "AUTH='none': with PRODUCTION=true every caller would be anonymous; set AUTH "
            "(keys, jwt) or ALLOW_ANONYMOUS=true on purpose"
        )
    if "keys" in modes and not settings.storage_enabled:
        raise SettingsError("AUTH='keys': API keys are kept in the database; DATABASE_URL is none")
    if "jwt" in modes:
        sources = [settings.jwt_jwks_url, settings.jwt_public_key, settings.jwt_secret]
        if sum(source is not None for source in sources) != 1:
            raise SettingsError(
                "AUTH='jwt': set exactly one of JWT_JWKS_URL, JWT_PUBLIC_KEY, JWT_SECRET"
            )
