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
from typing import Any

import httpx2
import openai

from ..errors import UpstreamBadResponse, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from .model import ChatRequest, Completion, FinishReason, Usage
from .pool import PooledTransport
from .upstream_errors import map_openai_error

_CHAT_PATH = "/chat/completions"
# Ollama and vLLM accept any key; the SDK refuses to start without one.
_PLACEHOLDER_KEY = "unused"
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
}


def _body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The request body, as plain JSON-ready data: the SDK sends it as it is.

    Going through `client.post` rather than `chat.completions.create` keeps the SDK's
    transport, auth, headers and error mapping, but skips its per-call walk of every
    parameter against its TypedDict annotations (a third of the service's CPU in a profile).
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _options(request: ChatRequest) -> openai.RequestOptions:
    return {"headers": dict(request.headers)} if request.headers else {}


def _clean(text: str) -> str:
    """Text a provider sent, with lone surrogates (valid JSON, not characters) replaced.

    Left in, they would break the next request that quotes them, and the SSE stream.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )


def _text_of(choices: Any, key: str) -> str | None:
    """`choices[0][key]["content"]` of a response or chunk, or None where it is absent."""
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    part = choices[0].get(key)
    content = part.get("content") if isinstance(part, dict) else None
    return content if isinstance(content, str) else None


def _finish_reason_of(choices: Any) -> FinishReason | None:
    """`choices[0]["finish_reason"]` of a response or chunk, or None where it is absent.

    A reason outside OpenAI's chat reasons (a server's own word, `tool_calls` we never ask
    for) reads as `stop`: the model ended on its own.
    """
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    reason = choices[0].get("finish_reason")
    if not isinstance(reason, str):
        return None
    return _FINISH_REASONS.get(reason, "stop")


def _mapped(exc: openai.OpenAIError | ValueError | httpx2.HTTPError) -> UpstreamError:
    """The service error for anything the SDK or its HTTP client raises mid-call."""
    if isinstance(exc, openai.OpenAIError):
        return map_openai_error(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeout()
    if isinstance(exc, httpx2.TransportError):
        # The connection broke (reset, cut mid-body): the next attempt may well work.
        return UpstreamUnavailable()
    return UpstreamBadResponse()


class _SSEData:
    """The `data` of each server-sent event in a body, fed the bytes as they arrive.

    Lines end in LF, CR or CRLF (a CRLF cut between two reads included); a blank line ends
    an event; `data:` lines join with a newline; comments and other fields are skipped.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._lines: list[bytes] = []
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        lines = (self._partial + chunk).splitlines(keepends=True)
        self._partial = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        events = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line:
                if self._lines:
                    events.append(b"\n".join(self._lines))
                    self._lines = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._lines.append(value[1:] if value.startswith(b" ") else value)
        return events


class _OpenAIStream:
    """The text of a streamed completion, read from the SDK's raw response: one piece per
    read from the socket (all the chunks that arrived together), with no object per chunk
    beyond the dict `json.loads` makes."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"

    async def __aiter__(self) -> AsyncIterator[str]:
        events = _SSEData()
        done = False
        try:
            async for received in self._response.aiter_bytes():
                if done:
                    # Past `[DONE]` the body is read to its end, so the connection is reused.
                    continue
                texts = []
                for data in events.feed(received):
                    if data.startswith(b"[DONE]"):
                        done = True
                        break
                    texts.append(self._text_of(json.loads(data)))
                text = "".join(texts)
                if text:
                    yield _clean(text)
        except (json.JSONDecodeError, UnicodeDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc

    def _text_of(self, chunk: Any) -> str:
        if not isinstance(chunk, dict) or chunk.get("error"):
            # A provider's error in the stream, after its 200 (the SDK's reading as well).
            raise UpstreamBadResponse()
        if chunk.get("usage") is not None:
            self.usage = _usage(chunk["usage"])
        reason = _finish_reason_of(chunk.get("choices"))
        if reason is not None:
            self.finish_reason = reason
        return _text_of(chunk.get("choices"), "delta") or ""


class _StreamCall:
    """`async with model.stream(request) as stream`: the call on entry, its response closed
    on exit. A class, not an `asynccontextmanager`: no async generator per call in flight
    (memory at thousands of open streams)."""

    __slots__ = ("_client", "_request", "_response")

    def __init__(self, client: openai.AsyncOpenAI, request: ChatRequest) -> None:
        self._client = client
        self._request = request
        self._response: httpx2.Response | None = None

    async def __aenter__(self) -> _OpenAIStream:
        try:
            # The raw response (the SDK's documented `cast_to=httpx.Response`): its status
            # errors are still raised here, but each chunk is not made an object.
            response = await self._client.post(
                _CHAT_PATH,
                body=_body(self._request, stream=True),
                options=_options(self._request),
                cast_to=httpx2.Response,
                stream=True,
            )
        except (openai.OpenAIError, json.JSONDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc
        if not isinstance(response, httpx2.Response):
            raise UpstreamBadResponse()
        self._response = response
        return _OpenAIStream(response)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            await self._response.aclose()


class OpenAIChatModel:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_s: float,
        max_connections: int = 1000,
        headers: Mapping[str, str] | None = None,
        name: str = "default",
    ) -> None:
        limits = httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = openai.DefaultAsyncHttpxClient(
            http2=False,
            timeout=httpx2.Timeout(timeout_s, connect=10.0),
            # `limits` still sizes the pools of proxies taken from the environment.
            limits=limits,
            transport=PooledTransport(name=name, max_connections=max_connections),
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
            response = await self._client.post(
                _CHAT_PATH,
                body=_body(request, stream=False),
                options=_options(request),
                cast_to=object,
            )
        except (openai.OpenAIError, json.JSONDecodeError, httpx2.HTTPError) as exc:
            raise _mapped(exc) from exc
        if not isinstance(response, dict):
            raise UpstreamBadResponse()
        text = _text_of(response.get("choices"), "message")
        if text is None and not isinstance(response.get("choices"), list):
            raise UpstreamBadResponse()
        return Completion(
            text=_clean(text or ""),
            usage=_usage(response.get("usage")),
            finish_reason=_finish_reason_of(response.get("choices")) or "stop",
        )

    def stream(self, request: ChatRequest) -> _StreamCall:
        return _StreamCall(self._client, request)

    async def aclose(self) -> None:
        await self._client.close()
