"""The long-lived things a running service holds: settings, ensemble, LLM client, lifecycle.

async with open_resources(settings) as resources:
    app = create_app(resources)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from .ensemble import Ensemble, load_ensemble
from .lifecycle import Lifecycle
from .llm import ChatModel, MockChatModel, OpenAIChatModel
from .settings import Settings


@dataclass
class Resources:
    settings: Settings
    ensemble: Ensemble
    model: ChatModel
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


def build_model(settings: Settings) -> ChatModel:
    if settings.use_llm_mock:
        return MockChatModel(
            first_token_delay_s=settings.mock_first_token_ms / 1000,
            token_delay_s=settings.mock_token_ms / 1000,
        )
    return OpenAIChatModel(
        base_url=settings.llm_base_url,
        api_key=settings.llm_key.get_secret_value(),
        timeout_s=settings.request_timeout_s,
    )


def load_configured_ensemble(settings: Settings) -> Ensemble:
    """The ensemble file, with the settings' defaults filled in. Raises EnsembleError."""
    return load_ensemble(settings.ensemble_file).with_defaults(
        model=settings.llm_model, agent_timeout_s=settings.agent_timeout_s
    )


@asynccontextmanager
async def open_resources(
    settings: Settings, *, model: ChatModel | None = None
) -> AsyncIterator[Resources]:
    """Load the ensemble and open the LLM client; close the client on the way out."""
    ensemble = load_configured_ensemble(settings)
    model = model or build_model(settings)
    try:
        yield Resources(settings=settings, ensemble=ensemble, model=model)
    finally:
        # Closing sockets must finish even when the server is being cancelled.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await model.aclose()
