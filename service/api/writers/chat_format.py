"""A run's events in OpenAI's chat completions format, from the same encoded events every
other reader gets (so a replay or a join presents the same way a live run does).

Streaming: `chat.completion.chunk` events. The summary is `delta.content`; the agents' work
is `delta.reasoning_content` (the field vLLM, DeepSeek and several chat UIs show as
collapsible "thinking"), so clients that ignore it are not disturbed; every chunk about an
agent also carries a `fanout` extension object (`event`, `agent`, `model`, `attempts`,
`error`, `text`). The last chunk has `finish_reason` and a `fanout` summary (per-agent
models, usage per call, timings); with `stream_options.include_usage` a usage chunk follows,
then `data: [DONE]`. A failure after streaming began is an `error` object, which the SDKs
raise.

    chunks = ChatChunks(completion_id="chatcmpl-...", model="default", include_usage=True)
    body = EventStreamBody(live, ..., present=chunks.present)
    completion = ChatCompletion(...); completion.add(part) for each part; completion.json()
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from ...events import KINDS, AgentCompleted, AgentDelta, EventKind
from .sse import KEEPALIVE

# What a run's error codes are in OpenAI's error shape: the type the SDKs show.
ERROR_TYPES = {
    "upstream_rate_limited": "rate_limit_error",
    "rate_limited": "rate_limit_error",
    "deadline_exceeded": "timeout",
    "upstream_timeout": "timeout",
}


def usage_of(data: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage: every call of the run (agents and summarizer) summed; and `cost` in
    US dollars where every price is known (the field OpenRouter sends)."""
    calls = data.get("usage") or {}
    prompt = sum(call.get("prompt_tokens", 0) for call in calls.values())
    completion = sum(call.get("completion_tokens", 0) for call in calls.values())
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cost = (data.get("cost") or {}).get("total_usd")
    if cost is not None:
        usage["cost"] = cost
    return usage


def finish_reason_of(data: dict[str, Any]) -> str:
    """The `done` event's finish reason (`length`: max_tokens cut the summary); `stop` for a
    run stored before `done` said it."""
    reason = data.get("finish_reason")
    return reason if isinstance(reason, str) else "stop"


def fanout_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The `fanout` extension on a finished completion: how the ensemble got there."""
    return {
        key: data[key]
        for key in ("agents", "models", "usage", "timings", "ensemble_version", "charged")
        if key in data
    }


def agent_extension(kind: type[EventKind], data: dict[str, Any]) -> dict[str, Any]:
    """The `fanout` object on an agent's chunk: the kind, the agent, and the fields its
    declaration names."""
    extension: dict[str, Any] = {"event": kind.KIND, "agent": data.get("source")}
    for wire_name, name in kind.EXTENSION:
        if wire_name in data:
            extension[name] = data[wire_name]
    return extension


class AgentsWork:
    """The agents' work as one text: each event's line, and an agent's streamed answer under
    its name (a heading each time another agent's text comes in between)."""

    def __init__(self) -> None:
        self._current: str | None = None
        self._streamed: set[str] = set()

    def line(self, kind: type[EventKind], data: dict[str, Any]) -> str | None:
        source = str(data.get("source", ""))
        if "round" in data and kind.KIND.startswith("agent."):
            # A later step of a deliberation: the same agent, another answer.
            source = f"{source} · {data.get('phase', '')} {data['round']}"
        if kind.KIND == AgentDelta.KIND:
            heading = "" if self._current == source else f"\n[{source}] "
            self._current = source
            self._streamed.add(source)
            return heading + str(data.get("message", ""))
        self._current = None
        if kind.KIND == AgentCompleted.KIND and source in self._streamed:
            # Its text is out already, piece by piece.
            return f"\n[{source}] answered ({data.get('model', '')})\n\n"
        return kind.reasoning_line(data)


def openai_error(message: str, code: str, error_type: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


# Where a stream puts the agents' work (OPENAI_REASONING).
ReasoningField = Literal["reasoning_content", "reasoning", "think", "off"]


class ChatChunks:
    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        include_usage: bool,
        reasoning: ReasoningField = "reasoning_content",
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = int(time.time())
        self._include_usage = include_usage
        self._started = False
        self._reasoning = reasoning
        self._work = AgentsWork()
        # With `think`: a <think> block is open in the content.
        self._thinking = False

    def _reasoning_chunk(self, line: str, fanout: dict[str, Any]) -> bytes:
        if self._reasoning == "off":
            return b""
        if self._reasoning == "think":
            opening = "" if self._thinking else "<think>\n"
            self._thinking = True
            return self._chunk({"content": opening + line}, fanout=fanout)
        return self._chunk({self._reasoning: line}, fanout=fanout)

    def _content_chunk(self, text: str) -> bytes:
        if self._thinking:
            self._thinking = False
            text = "</think>\n\n" + text
        return self._chunk({"content": text})

    def _chunk(self, delta: dict[str, Any], **extra: Any) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            **extra,
        }
        return _event(body)

    def present(self, event_id: int, event_type: str, data_json: str) -> bytes:
        data = json.loads(data_json)
        kind = KINDS.get(event_type)
        out = b""
        if not self._started:
            self._started = True
            out += self._chunk({"role": "assistant", "content": ""})
        if kind is None:
            return out
        if kind.OPENAI == "content":
            return out + self._content_chunk(data.get("message", ""))
        if kind.OPENAI == "reasoning":
            line = self._work.line(kind, data)
            if line is None:
                return out
            return out + self._reasoning_chunk(line, agent_extension(kind, data))
        if self._thinking:
            out += self._content_chunk("")
        if kind.OPENAI == "finish":
            final = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason_of(data)}],
                "fanout": fanout_summary(data),
            }
            out += _event(final)
            if self._include_usage:
                out += _event(
                    {
                        "id": self._id,
                        "object": "chat.completion.chunk",
                        "created": self._created,
                        "model": self._model,
                        "choices": [],
                        "usage": usage_of(data),
                    }
                )
            return out + b"data: [DONE]\n\n"
        error = data.get("error", {})
        code = error.get("code", "internal_error")
        return out + _event(
            openai_error(error.get("message", ""), code, ERROR_TYPES.get(code, "server_error"))
        )


class ChatCompletion:
    """A whole run as one `chat.completion` (stream: false)."""

    def __init__(self, *, completion_id: str, model: str) -> None:
        self._id = completion_id
        self._model = model
        self._created = int(time.time())
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._work = AgentsWork()
        self._agents: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    def add(self, event_id: int, event_type: str, data_json: str) -> None:
        data = json.loads(data_json)
        kind = KINDS.get(event_type)
        if kind is None:
            return
        if kind.OPENAI == "content":
            self._content.append(data.get("message", ""))
        elif kind.OPENAI == "finish":
            self.final = data
        elif kind.OPENAI == "error":
            self.error = data.get("error", {})
        elif kind.RESTARTS_ANSWER:
            self._content.clear()  # a whole answer, unlike a stream, can take the restart
        line = self._work.line(kind, data) if kind.OPENAI == "reasoning" else None
        if line is not None:
            self._reasoning.append(line)
        if kind.ANSWER:
            self._agents.append(agent_extension(kind, data))

    def json(self) -> dict[str, Any]:
        final = self.final or {}
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(self._content),
                        "reasoning_content": "".join(self._reasoning),
                    },
                    "finish_reason": finish_reason_of(final),
                }
            ],
            "usage": usage_of(final),
            "fanout": {**fanout_summary(final), "answers": self._agents},
        }


def _event(body: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
        + b"\n\n"
    )


__all__ = ["KEEPALIVE", "ChatChunks", "ChatCompletion", "openai_error"]
