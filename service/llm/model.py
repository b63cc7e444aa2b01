"""The one interface the pipeline uses to talk to a language model.

    completion = await model.complete(request)
    async with model.stream(request) as stream:
        async for text in stream:
            ...
        usage, finish_reason = stream.usage, stream.finish_reason

Implementations raise only `service.errors.UpstreamError` subclasses (or `trio.Cancelled`):
provider exceptions are mapped at this boundary, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
# Why a model stopped, in OpenAI's words: it was done, or it reached `max_tokens` ("length"),
# or the provider's filter stopped it.
FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An OpenAI-compatible server. Calls to equal endpoints share one connection pool.

    The key itself is never here: `api_key_env` names the environment variable holding it.
    """

    name: str
    base_url: str
    api_key_env: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_connections: int = 1000


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One call: which model where, what to send, and which agent asks (for logs and the mock).

    `endpoint` None means the model's own default server; `headers` are added to this call.
    """

    model: str
    messages: tuple[ChatMessage, ...]
    caller: str
    endpoint: Endpoint | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage | None
    finish_reason: FinishReason = "stop"


class CompletionStream(Protocol):
    """Text deltas of a streamed completion; `usage` and `finish_reason` are known once
    iteration has ended."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def finish_reason(self) -> FinishReason: ...

    def __aiter__(self) -> AsyncIterator[str]: ...


class ChatModel(Protocol):
    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AbstractAsyncContextManager[CompletionStream]: ...

    async def aclose(self) -> None: ...
