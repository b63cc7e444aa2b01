"""Opening what a running service holds, from its settings: the LLM client, the ensembles
(checked they can run), the store, the limiter, the relay, tracing; and closing them.

async with open_resources(settings) as resources:
    app = create_app(resources)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..auth.authenticate import Authenticator
from ..auth.failures import FailedAttempts, SignInLimit
from ..client_address import parse_networks
from ..ensemble import (
    DEFAULT_PROVIDER,
    Ensemble,
    EnsembleError,
    EnsembleStore,
    LoadedEnsembles,
    Provider,
    load_ensembles,
)
from ..limits import Limiter, MemoryBackend, load_policy
from ..limits.redis import RedisBackend
from ..limits.sign_ins import SharedFailedAttempts
from ..llm import ChatModel, MockChatModel
from ..llm.mock import MOCK_FAULTS, mock_fault
from ..redis_client import connect
from ..runs.relay import RedisRelay
from ..settings import Settings, SettingsError
from ..storage import open_store
from ..storage.prices import load_prices
from ..telemetry.tracing import setup_tracing
from ..urls import is_local_url, redact_url
from .container import Resources

if TYPE_CHECKING:
    from ..auth.tokens import TokenVerifier

_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def default_provider(settings: Settings) -> Provider:
    """The server of members that name none: LLM_BASE_URL, with LLM_KEY unless it is local."""
    needs_key = bool(settings.llm_key.get_secret_value()) or not is_local_url(settings.llm_base_url)
    return Provider(base_url=settings.llm_base_url, api_key_env="LLM_KEY" if needs_key else None)


def build_model(settings: Settings) -> ChatModel:
    if settings.use_llm_mock:
        return MockChatModel(
            first_token_delay_s=settings.mock_first_token_ms / 1000,
            token_delay_s=settings.mock_token_ms / 1000,
        )
    # Imported here: it loads the openai SDK, which a service on the mock never uses.
    from ..llm.router import ProviderRouter

    return ProviderRouter(
        default=default_provider(settings).endpoint(DEFAULT_PROVIDER),
        secret=settings.secret,
        timeout_s=settings.request_timeout_s,
    )


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The JWT verifier when AUTH names jwt; PyJWT and cryptography are loaded only then."""
    if "jwt" not in settings.auth_modes:
        return None
    from ..auth.tokens import TokenVerifier

    return TokenVerifier.from_settings(settings)


def check_ensemble_can_run(ensemble: Ensemble, settings: Settings) -> None:
    """Every key an ensemble needs is set; every `mock:FAULT` model is one the mock knows.

    Raises SettingsError (LLM_KEY) or EnsembleError (a provider's key), in one line.
    """
    source = settings.ensemble_file
    if settings.use_llm_mock:
        for member in ensemble.members:
            for target in ensemble.targets(member):
                fault = mock_fault(target.model)
                if fault is not None and fault not in MOCK_FAULTS:
                    known = ", ".join(sorted(MOCK_FAULTS))
                    raise EnsembleError(
                        f"{source}: {member.name}: the mock knows no model {target.model!r} "
                        f"(mock:FAULT with FAULT one of {known})"
                    )
        return
    for name, provider in ensemble.used_providers().items():
        variable = provider.api_key_env
        if variable is None:
            continue
        key = settings.secret(variable)
        if key and not _VISIBLE_ASCII.fullmatch(key):
            # Never echo the value: it is a key, and it would be sent in a header.
            raise SettingsError(
                f"{variable}: the key holds characters an HTTP header cannot carry "
                "(spaces, control characters or non-ASCII)"
            )
        if key:
            continue
        if variable == "LLM_KEY" and name == DEFAULT_PROVIDER:
            raise SettingsError(
                f"LLM_KEY is required when USE_LLM_MOCK=false and LLM_BASE_URL "
                f"({redact_url(settings.llm_base_url)}) is not a local server; "
                "set LLM_KEY or USE_LLM_MOCK=true"
            )
        raise EnsembleError(
            f"{source}: the provider {name!r} reads its key from {variable} (api_key_env), "
            "which is not set"
        )


def load_configured_ensembles(settings: Settings) -> LoadedEnsembles:
    """ENSEMBLE_FILE's ensembles with the settings' defaults filled in, checked against them.

    Raises EnsembleError, or SettingsError for a key the settings lack.
    """
    loaded = load_ensembles(settings.ensemble_file)

    def configure(name: str, ensemble: Ensemble) -> Ensemble:
        configured = ensemble.with_defaults(
            model=settings.llm_model,
            agent_timeout_s=settings.agent_timeout_s,
            default_provider=default_provider(settings),
        )
        check_ensemble_can_run(configured, settings)
        return configured

    return loaded.map(configure)


def load_configured_ensemble(settings: Settings) -> Ensemble:
    """The default ensemble, configured and checked (see `load_configured_ensembles`)."""
    return load_configured_ensembles(settings).pick(None)[1]


@asynccontextmanager
async def open_limiter(settings: Settings) -> AsyncIterator[Limiter | None]:
    """LIMITS_FILE's limiter: in Redis when REDIS_URL is set, else in this process."""
    if settings.limits_file is None:
        yield None
        return
    policy = load_policy(settings.limits_file)
    if settings.redis_url is None:
        yield Limiter(
            policy,
            MemoryBackend(),
            on_error=settings.rate_limit_on_error,
            lease_s=settings.stream_lease_s,
        )
        return
    backend = RedisBackend(
        settings.redis_url.get_secret_value(), timeout_s=settings.rate_limit_timeout_s
    )
    async with backend:
        yield Limiter(
            policy,
            backend,
            on_error=settings.rate_limit_on_error,
            lease_s=settings.stream_lease_s,
        )


@asynccontextmanager
async def open_sign_in_limit(
    settings: Settings, limiter: Limiter | None
) -> AsyncIterator[SignInLimit]:
    """The refused sign-ins limit: in Redis with REDIS_URL (every instance counts the same
    failures; the limiter's connection when there is one), else in this process."""
    burst, every_s = settings.auth_failure_burst, settings.auth_failure_every_s
    if settings.redis_url is None:
        yield FailedAttempts(burst=burst, every_s=every_s)
        return
    if limiter is not None and isinstance(limiter.backend, RedisBackend):
        yield SharedFailedAttempts(limiter.backend, burst=burst, every_s=every_s)
        return
    backend = RedisBackend(
        settings.redis_url.get_secret_value(), timeout_s=settings.rate_limit_timeout_s
    )
    async with backend:
        yield SharedFailedAttempts(backend, burst=burst, every_s=every_s)


@asynccontextmanager
async def open_relay(settings: Settings) -> AsyncIterator[RedisRelay | None]:
    """The live relay between instances: with REDIS_URL and a database to follow runs in."""
    if settings.redis_url is None or not settings.storage_enabled:
        yield None
        return
    client = connect(settings.redis_url.get_secret_value())
    async with client:
        yield RedisRelay(client)


@asynccontextmanager
async def open_resources(
    settings: Settings, *, model: ChatModel | None = None
) -> AsyncIterator[Resources]:
    """Load the ensemble and open the LLM client; close the client on the way out."""
    ensembles = EnsembleStore(partial(load_configured_ensembles, settings))
    traces_endpoint = settings.otel_exporter_otlp_traces_endpoint
    if traces_endpoint is None and settings.otel_exporter_otlp_endpoint:
        # The base endpoint names the collector; traces go to its standard path.
        traces_endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    setup_tracing(traces_endpoint)
    model = model or build_model(settings)
    try:
        async with (
            open_store(settings) as store,
            open_limiter(settings) as limiter,
            open_sign_in_limit(settings, limiter) as failed_attempts,
            open_relay(settings) as relay,
        ):
            tokens = token_verifier(settings)
            yield Resources(
                limiter=limiter,
                relay=relay,
                trusted_proxies=parse_networks(settings.trusted_proxies),
                settings=settings,
                ensembles=ensembles,
                model=model,
                store=store,
                authenticator=Authenticator(settings, store, tokens),
                prices=load_prices(settings.prices_file) if settings.prices_file else None,
                failed_attempts=failed_attempts,
            )
    finally:
        # Closing sockets must finish even when the server is being cancelled.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await model.aclose()
