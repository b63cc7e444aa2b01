"""A deterministic, cancellable stand-in for a language model (USE_LLM_MOCK=true).

Its text depends only on the caller and the prompt, so a test can predict it. An agent's
answer opens with a sentence that names the agent; a summarizer's prompt that labels answers
as `<answer from="NAME">...</answer>` gets back the opening sentence of each, so anyone can
see that the summary was built from every answer. Like a real model it stops after the
request's `max_tokens` tokens (one word-sized piece each), with finish reason `length`:

    model = MockChatModel(first_token_delay_s=0.25, token_delay_s=0.025)
    completion = await model.complete(request)

A model name `mock:FAULT` makes the mock misbehave the way real providers do, so the service's
retries, fallbacks and partial results can be seen by hand (set it in the ensemble file):

    stall          never answers (the agent's timeout ends it)
    slow           answers, but twenty times later than usual
    rate_limited   429 with Retry-After: 1 s, every time
    unavailable    a 5xx, every time
    flaky          a 5xx on every other call: a retry succeeds
    bad_response   an answer that cannot be used
    auth_failed    the key is refused
    cut            a stream that breaks after three tokens
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ..errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from .model import ChatRequest, Completion, CompletionStream, FinishReason, Usage

FAULT_PREFIX = "mock:"
_FAILURES: dict[str, Callable[[], UpstreamError]] = {
    "rate_limited": lambda: UpstreamRateLimited(retry_after_s=1.0),
    "unavailable": UpstreamUnavailable,
    "flaky": UpstreamUnavailable,
    "bad_response": UpstreamBadResponse,
    "auth_failed": UpstreamAuthFailed,
    "cut": UpstreamUnavailable,
}
MOCK_FAULTS = frozenset({*_FAILURES, "stall", "slow"})
SLOW_FACTOR = 20
CUT_AFTER_TOKENS = 3


class MockFault(Exception):
    """The cause a mock failure carries, as a provider's own error would (seen in logs only)."""


def mock_fault(model: str) -> str | None:
    """The fault a `mock:FAULT` model name asks for, or None for a model that behaves."""
    return model.removeprefix(FAULT_PREFIX) if model.startswith(FAULT_PREFIX) else None


_ANSWER = re.compile(r'<answer from="([^"]+)">\s*(.*?)\s*</answer>', re.DOTALL)
_TOKEN = re.compile(r"\s*\S+|\s+")
_OPENINGS = (
    "Think of {topic} as a story that starts small and keeps growing.",
    "Picture {topic} as a ball rolling down a gentle hill.",
    "At its core, {topic} comes down to a few clear steps.",
    "The short version: {topic} follows rules anyone can check.",
    "Imagine {topic} as a river that always finds the lowest path.",
    "Start with the facts: {topic} has been measured many times.",
)
_DETAILS = (
    "Each part pulls on the next, and the whole thing moves together.",
    "Small causes add up, so the effect is easy to see once you look.",
    "Scientists test this again and again, and the results agree.",
    "A simple example makes it clear: drop something and watch it fall.",
    "The same idea shows up in many places once you know to look for it.",
    "It helps to go one step at a time and check each step.",
)


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def mock_reply(request: ChatRequest) -> str:
    """The text the mock answers `request` with."""
    prompt = request.messages[-1].content if request.messages else ""
    answers = _ANSWER.findall(prompt)
    if answers:
        quoted = " ".join(f"From {name}: {_first_sentence(text)}" for name, text in answers)
        return f"Combining {len(answers)} answers. {quoted}"
    seed_text = "\n".join([request.caller, *(m.content for m in request.messages)])
    seed = hashlib.sha256(seed_text.encode()).digest()
    topic = " ".join(prompt.split())[:60] or "this"
    opening = _OPENINGS[seed[0] % len(_OPENINGS)].format(topic=f'"{topic}"')
    detail = _DETAILS[seed[1] % len(_DETAILS)]
    return f"({request.caller}) {opening} {detail}"


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that join back to `text`."""
    return _TOKEN.findall(text)


def reply_tokens(request: ChatRequest) -> tuple[list[str], FinishReason]:
    """The tokens the mock sends for `request`, cut at its `max_tokens`, and why they end."""
    tokens = split_tokens(mock_reply(request))
    if request.max_tokens is not None and len(tokens) > request.max_tokens:
        return tokens[: request.max_tokens], "length"
    return tokens, "stop"


def _usage(request: ChatRequest, tokens: list[str]) -> Usage:
    prompt_tokens = sum(len(m.content.split()) for m in request.messages)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens))


def _failure(fault: str, model: str) -> UpstreamError:
    error = _FAILURES[fault]()
    error.__cause__ = MockFault(f"the model {model!r} is told to fail")
    return error


class _MockStream:
    def __init__(
        self,
        request: ChatRequest,
        tokens: list[str],
        first_token_delay_s: float,
        token_delay_s: float,
        finish_reason: FinishReason,
    ) -> None:
        self._request = request
        self._tokens = tokens
        self._first_token_delay_s = first_token_delay_s
        self._token_delay_s = token_delay_s
        self._finish_reason = finish_reason
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"

    async def __aiter__(self) -> AsyncIterator[str]:
        await trio.sleep(self._first_token_delay_s)
        fault = mock_fault(self._request.model)
        for index, token in enumerate(self._tokens):
            if index:
                await trio.sleep(self._token_delay_s)
            if fault == "cut" and index == CUT_AFTER_TOKENS:
                raise _failure(fault, self._request.model)
            yield token
        self.usage = _usage(self._request, self._tokens)
        self.finish_reason = self._finish_reason


class MockChatModel:
    def __init__(self, *, first_token_delay_s: float = 0.0, token_delay_s: float = 0.0) -> None:
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self._calls: Counter[tuple[str, str]] = Counter()

    async def _misbehave(self, request: ChatRequest, *, streaming: bool) -> float:
        """Fail or stall as the model name asks; returns the delay before the first token."""
        fault = mock_fault(request.model)
        self._calls[request.caller, request.model] += 1
        if fault == "stall":
            await trio.sleep_forever()
        if fault == "slow":
            return self.first_token_delay_s * SLOW_FACTOR
        failing = fault in _FAILURES and not (streaming and fault == "cut")
        if fault == "flaky":
            failing = self._calls[request.caller, request.model] % 2 == 1
        if failing:
            await trio.sleep(self.first_token_delay_s)
            raise _failure(fault or "", request.model)
        return self.first_token_delay_s

    async def complete(self, request: ChatRequest) -> Completion:
        first_token_delay_s = await self._misbehave(request, streaming=False)
        tokens, finish_reason = reply_tokens(request)
        # Take as long as streaming the same answer would, so a demo feels like the real thing.
        await trio.sleep(first_token_delay_s + self.token_delay_s * max(len(tokens) - 1, 0))
        return Completion(
            text="".join(tokens), usage=_usage(request, tokens), finish_reason=finish_reason
        )

    @asynccontextmanager
    async def stream(self, request: ChatRequest) -> AsyncIterator[CompletionStream]:
        first_token_delay_s = await self._misbehave(request, streaming=True)
        tokens, finish_reason = reply_tokens(request)
        yield _MockStream(request, tokens, first_token_delay_s, self.token_delay_s, finish_reason)

    async def aclose(self) -> None:
        return None
