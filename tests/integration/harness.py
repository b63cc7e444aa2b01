"""Run the real service on a real port, in front of the fake upstream, inside a trio test.

async with running_service(fake, agents={"a": "fake-a"}) as service:
    async with service.client.stream("POST", "/api/process", json=body) as response:
        events = await read_events(response)
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from service.llm import ChatModel
from service.process.server import serve_app
from service.resources import Resources, open_resources
from service.settings import load_settings
from tests.fake_upstream import FakeUpstream, base_url, serve_fake_upstream

# One TLS context for every test client: httpx loads the CA bundle for each client made
# without one (15 ms), though these clients speak plain HTTP.
TLS = ssl.create_default_context()


@dataclass
class SseEvent:
    id: str
    event: str
    data: dict[str, Any]
    arrived_at: float = field(default=0.0)


def ensemble_toml(agents: Mapping[str, str], summarizer_model: str, **agent_extra: str) -> str:
    parts = []
    for name, model in agents.items():
        extra = "".join(f"{key} = {value}\n" for key, value in agent_extra.items())
        parts.append(
            f'[[agents]]\nname = "{name}"\nmodel = "{model}"\n'
            f'system_prompt = "You are agent {name}."\n{extra}'
        )
    parts.append(
        f'[summarizer]\nname = "combine"\nmodel = "{summarizer_model}"\n'
        'system_prompt = "Combine the answers."\n'
    )
    return "\n".join(parts)


@dataclass
class RunningService:
    url: str
    client: httpx.AsyncClient
    resources: Resources
    shutdown: trio.Event
    stopped: trio.Event


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def read_events(response: httpx.Response) -> list[SseEvent]:
    """Every event of a stream, asserting the SSE framing as it goes."""
    events = []
    async for event in iter_events(response):
        events.append(event)
    return events


async def iter_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if fields or data_lines:
                yield SseEvent(
                    id=fields["id"],
                    event=fields["event"],
                    data=json.loads("\n".join(data_lines)),
                    arrived_at=trio.current_time(),
                )
            fields, data_lines = {}, []
            continue
        name, _, value = line.partition(": ")
        if name == "data":
            data_lines.append(value)
        else:
            fields[name] = value


def upstream_env(binds: list[str], ensemble_file: Path) -> dict[str, str]:
    """The settings that point the service at the fake upstream serving on `binds`."""
    return {
        "USE_LLM_MOCK": "false",
        "LLM_BASE_URL": base_url(binds),
        "LLM_KEY": "test-key",
        "ENSEMBLE_FILE": str(ensemble_file),
    }


@asynccontextmanager
async def running_service(
    tmp_path: Path,
    fake: FakeUpstream | None,
    *,
    agents: Mapping[str, str] | None = None,
    summarizer_model: str = "fake-summary",
    env: Mapping[str, str] | None = None,
    model: ChatModel | None = None,
    agent_extra: Mapping[str, str] | None = None,
    ensemble: str | None = None,
) -> AsyncIterator[RunningService]:
    """The fake upstream (if any) and the service, each on its own free port.

    `ensemble` replaces the generated ensemble file; `{upstream}` in it becomes the fake's
    base URL, so a file can name providers that point at the fake.
    """
    async with trio.open_nursery() as nursery:
        settings_env = {
            "HTTP_ADDR": "127.0.0.1:0",
            "USE_LLM_MOCK": "true",
            # The mock answers in milliseconds (its defaults take seconds, for people who
            # watch it); a test that needs a run still going says so in `env`.
            "MOCK_FIRST_TOKEN_MS": "5",
            "MOCK_TOKEN_MS": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'fanout.db'}",
        }
        if fake is not None:
            upstream_binds = await nursery.start(serve_fake_upstream, fake)
            ensemble_file = tmp_path / "ensemble.toml"
            if ensemble is None:
                ensemble = ensemble_toml(
                    agents or {"alpha": "fake-a", "beta": "fake-b"},
                    summarizer_model,
                    **(agent_extra or {}),
                )
            ensemble_file.write_text(ensemble.replace("{upstream}", base_url(upstream_binds)))
            settings_env |= upstream_env(upstream_binds, ensemble_file)
        settings = load_settings({**settings_env, **(env or {})}, dotenv_path=None)
        shutdown = trio.Event()
        stopped = trio.Event()
        async with open_resources(settings, model=model) as resources:

            async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await serve_app(resources, shutdown, task_status=task_status)
                finally:
                    stopped.set()

            binds = await nursery.start(serve)
            url = binds[0]
            async with httpx.AsyncClient(base_url=url, timeout=10, verify=TLS) as client:
                yield RunningService(url, client, resources, shutdown, stopped)
            nursery.cancel_scope.cancel()
