"""The OpenAI-compatible client reports why the provider's model stopped (`finish_reason`),
streamed and not, over a real socket: a provider that cut the answer at max_tokens says
`length`, and a reason outside OpenAI's chat reasons reads as `stop`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from service.llm import ChatMessage, ChatRequest
from service.llm.openai_model import OpenAIChatModel

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def provider_that_stops_with(reason: str) -> Callable[[dict[str, Any], Receive, Send], Any]:
    """An ASGI chat completions endpoint: two words, then `reason`, streamed or whole."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        streaming = json.loads(body).get("stream", False)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if streaming:
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {"content": " words"}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]},
                {"choices": [], "usage": usage},
            ]
            payload = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
            payload += b"data: [DONE]\n\n"
            content_type = b"text/event-stream"
        else:
            whole = {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "two words"},
                        "finish_reason": reason,
                    }
                ],
                "usage": usage,
            }
            payload = json.dumps(whole).encode()
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


@asynccontextmanager
async def chat_model_of(reason: str) -> AsyncIterator[OpenAIChatModel]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, provider_that_stops_with(reason), config)
        model = OpenAIChatModel(base_url=f"{binds[0]}/v1", api_key="", timeout_s=5)
        try:
            yield model
        finally:
            await model.aclose()
            nursery.cancel_scope.cancel()


REQUEST = ChatRequest(
    model="any", messages=(ChatMessage("user", "hi"),), caller="summarizer", max_tokens=2
)


@pytest.mark.parametrize(
    ("sent", "reported"),
    [("length", "length"), ("stop", "stop"), ("content_filter", "content_filter"), ("eos", "stop")],
)
async def test_the_providers_finish_reason_is_reported(sent: str, reported: str) -> None:
    async with chat_model_of(sent) as model:
        async with model.stream(REQUEST) as stream:
            text = "".join([piece async for piece in stream])
        completion = await model.complete(REQUEST)
    assert text == "two words"
    assert stream.finish_reason == reported
    assert (completion.text, completion.finish_reason) == ("two words", reported)
