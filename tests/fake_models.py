"""In-process ChatModel fakes for virtual-time tests: scripted per caller, every call logged.

model = ScriptedModel({"a": Script(delay_s=2, text="A"), "sum": Script(tokens=("x", "y"))})

A key `caller@model` scripts one model of a caller (fallbacks); a list of scripts is used one
per call, the last one again for every later call (retries):

model = ScriptedModel({"a": [Script(error=UpstreamUnavailable()), Script(text="A")],
                       "a@backup": Script(text="from the fallback")})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from service.errors import ServiceError
from service.llm import ChatRequest, Completion, CompletionStream, FinishReason, Usage


@dataclass(frozen=True)
class Script:
    """How the fake answers one caller."""

    delay_s: float = 0.0  # before the answer (non-streaming) or the first token (streaming)
    text: str = "answer"
    # Streamed pieces; None: `text` as one piece; () streams nothing at all.
    tokens: tuple[str, ...] | None = None
    token_delay_s: float = 0.0
    error: ServiceError | None = None  # raised after delay_s
    error_after_tokens: int | None = None  # streaming: raise `error` after this many tokens


@dataclass
class Call:
    caller: str
    request: ChatRequest
    started_at: float
    ended_at: float | None = None
    outcome: str = "open"  # open | completed | failed | cancelled


@dataclass
class _Stream:
    tokens: tuple[str, ...]
    script: Script
    call: Call
    usage: Usage | None = None
    finish_reason: FinishReason = "stop"

    async def __aiter__(self) -> AsyncIterator[str]:
        await trio.sleep(self.script.delay_s)
        error_at = self.script.error_after_tokens or 0
        for index, token in enumerate(self.tokens):
            if self.script.error is not None and index == error_at:
                raise self.script.error
            if index:
                await trio.sleep(self.script.token_delay_s)
            yield token
        self.usage = Usage(prompt_tokens=1, completion_tokens=len(self.tokens))


@dataclass
class ScriptedModel:
    scripts: dict[str, Script | Sequence[Script]]
    calls: list[Call] = field(default_factory=list)
    closed: bool = False
    _used: Counter[str] = field(default_factory=Counter)

    def _start(self, request: ChatRequest) -> tuple[Script, Call]:
        call = Call(caller=request.caller, request=request, started_at=trio.current_time())
        self.calls.append(call)
        key = f"{request.caller}@{request.model}"
        if key not in self.scripts:
            key = request.caller
        scripted = self.scripts[key]
        if isinstance(scripted, Script):
            return scripted, call
        index = min(self._used[key], len(scripted) - 1)
        self._used[key] += 1
        return scripted[index], call

    def calls_of(self, caller: str) -> list[Call]:
        return [c for c in self.calls if c.caller == caller]

    @staticmethod
    def _end(call: Call, outcome: str) -> None:
        call.outcome = outcome
        call.ended_at = trio.current_time()

    def call(self, caller: str) -> Call:
        (found,) = [c for c in self.calls if c.caller == caller]
        return found

    async def complete(self, request: ChatRequest) -> Completion:
        script, call = self._start(request)
        try:
            await trio.sleep(script.delay_s)
            if script.error is not None:
                raise script.error
        except trio.Cancelled:
            self._end(call, "cancelled")
            raise
        except ServiceError:
            self._end(call, "failed")
            raise
        self._end(call, "completed")
        return Completion(text=script.text, usage=Usage(prompt_tokens=1, completion_tokens=1))

    @asynccontextmanager
    async def stream(self, request: ChatRequest) -> AsyncIterator[CompletionStream]:
        script, call = self._start(request)
        try:
            tokens = (script.text,) if script.tokens is None else script.tokens
            yield _Stream(tokens, script, call)
        except trio.Cancelled:
            self._end(call, "cancelled")
            raise
        except ServiceError:
            self._end(call, "failed")
            raise
        self._end(call, "completed")

    async def aclose(self) -> None:
        self.closed = True
