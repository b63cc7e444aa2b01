"""ChatModel for any OpenAI-compatible server (OpenAI, Ollama, vLLM, ...), via the openai SDK.

Calls go over HTTP/1.1 on purpose: cancelling an HTTP/1.1 call closes its connection, which
stops the upstream from generating; over HTTP/2 the SDK never resets the stream.

    model = OpenAIChatModel(base_url="http://localhost:11434/v1", api_key="", timeout_s=120)
    try:
        completion = await model.complete(request)
    finally:
        await model.aclose()
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from ..errors import UpstreamBadResponse, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from .model import ChatRequest, Completion, CompletionStream, Usage
from .upstream_errors import map_openai_error

# Ollama and vLLM accept any key; the SDK refuses to start without one.
_PLACEHOLDER_KEY = "unused"


def _messages(request: ChatRequest) -> list[ChatCompletionMessageParam]:
    return [{"role": m.role, "content": m.content} for m in request.messages]  # type: ignore[misc]


def _clean(text: str) -> str:
    """Text a provider sent, with lone surrogates (valid JSON, not characters) replaced.

    Left in, they would break the next request that quotes them, and the SSE stream.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _options(request: ChatRequest) -> dict[str, Any]:
    """The optional parameters of one call; unset ones are left out, not sent as null."""
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["max_tokens"] = request.max_tokens
    if request.headers:
        options["extra_headers"] = dict(request.headers)
    return options


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(prompt_tokens=raw.prompt_tokens or 0, completion_tokens=raw.completion_tokens or 0)


def _mapped(exc: openai.OpenAIError | json.JSONDecodeError | httpx2.HTTPError) -> UpstreamError:
    """The service error for anything the SDK or its HTTP client raises mid-call."""
    if isinstance(exc, openai.OpenAIError):
        return map_openai_error(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeout()
    if isinstance(exc, httpx2.TransportError):
        # The connection broke (reset, cut mid-body): the next attempt may well work.
        return UpstreamUnavailable()
    return UpstreamBadResponse()


class _OpenAIStream:
    def __init__(self, chunks: openai.AsyncStream[ChatCompletionChunk]) -> None:
        self._chunks = chunks
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for chunk in self._chunks:
                if chunk.usage is not None:
                    self.usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield _clean(choice.delta.content)
        except (openai.OpenAIError, json.JSONDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc


class OpenAIChatModel:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_s: float,
        max_connections: int = 1000,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = openai.DefaultAsyncHttpxClient(
            http2=False,
            timeout=httpx2.Timeout(timeout_s, connect=10.0),
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        # Retries belong to the pipeline, which knows each agent's deadline.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or _PLACEHOLDER_KEY,
            max_retries=0,
            default_headers=dict(headers or {}),
            http_client=self._http,
        )

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            response = await self._client.chat.completions.create(
                model=request.model, messages=_messages(request), **_options(request)
            )
        except (openai.OpenAIError, json.JSONDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc
        if not response.choices:
            raise UpstreamBadResponse()
        text = _clean(response.choices[0].message.content or "")
        return Completion(text=text, usage=_usage(response.usage))

    @asynccontextmanager
    async def stream(self, request: ChatRequest) -> AsyncIterator[CompletionStream]:
        try:
            chunks = await self._client.chat.completions.create(
                model=request.model,
                messages=_messages(request),
                stream=True,
                stream_options={"include_usage": True},
                **_options(request),
            )
        except (openai.OpenAIError, json.JSONDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc
        async with chunks:
            yield _OpenAIStream(chunks)

    async def aclose(self) -> None:
        await self._client.close()
