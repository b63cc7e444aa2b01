"""Send each call to the server its `ChatRequest.endpoint` names, one pooled client per server.

Clients are made on first use and kept until `aclose`, so every agent that names the same
provider shares its connection pool:

    router = ProviderRouter(default=Endpoint("default", url, "LLM_KEY"), secret=settings.secret,
                            timeout_s=120)
    completion = await router.complete(request)       # request.endpoint picks the server
    await router.aclose()
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import trio

from .model import ChatRequest, Completion, CompletionStream, Endpoint
from .openai_model import OpenAIChatModel


class ProviderRouter:
    def __init__(
        self, *, default: Endpoint, secret: Callable[[str], str], timeout_s: float
    ) -> None:
        self._default = default
        self._secret = secret
        self._timeout_s = timeout_s
        self._clients: dict[Endpoint, OpenAIChatModel] = {}

    def client_for(self, endpoint: Endpoint | None) -> OpenAIChatModel:
        endpoint = endpoint or self._default
        client = self._clients.get(endpoint)
        if client is None:
            client = OpenAIChatModel(
                base_url=endpoint.base_url,
                api_key=self._secret(endpoint.api_key_env) if endpoint.api_key_env else "",
                timeout_s=self._timeout_s,
                max_connections=endpoint.max_connections,
                headers=dict(endpoint.headers),
                name=endpoint.name,
            )
            self._clients[endpoint] = client
        return client

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.client_for(request.endpoint).complete(request)

    def stream(self, request: ChatRequest) -> AbstractAsyncContextManager[CompletionStream]:
        return self.client_for(request.endpoint).stream(request)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client.aclose)
