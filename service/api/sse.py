"""The one place pipeline events become Server-Sent Events bytes.

encoder = SseEncoder(message_id="m-1", conversation_id=None)
encoder.encode(AgentStarted(agent="llm-1"))
# b'id: 1\\nevent: agent.started\\ndata: {"message_id":"m-1",...}\\n\\n'
"""

from __future__ import annotations

import json
from typing import Any

from ..pipeline import (
    AgentCompleted,
    AgentFailed,
    AgentRetrying,
    AgentStarted,
    Done,
    Event,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
)

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _error(error: PublicError) -> dict[str, str]:
    return {"code": error.code, "message": error.message}


def describe(event: Event) -> tuple[str, str, str, dict[str, Any]]:
    """(type, status, source, extra fields) of `event`; `message` and `final` are extras."""
    extras: dict[str, Any]
    match event:
        case AgentStarted(agent=agent):
            return "agent.started", f"Sending to {agent}", agent, {}
        case AgentRetrying(agent=agent, attempt=attempt, model=model, error=error, delay_ms=ms):
            extras = {"attempt": attempt, "model": model, "error": _error(error), "delay_ms": ms}
            return "agent.retrying", f"Retrying {agent} (attempt {attempt})", agent, extras
        case AgentCompleted(agent=agent, text=text, model=model, attempts=attempts):
            extras = {"message": text, "model": model, "attempts": attempts}
            return "agent.completed", f"Received from {agent}", agent, extras
        case AgentFailed(agent=agent, error=error, attempts=attempts):
            extras = {"error": _error(error), "attempts": attempts}
            return "agent.failed", f"Failed {agent}", agent, extras
        case SummaryStarted(
            summarizer=name, agents=agents, missing=missing, ensemble_version=version
        ):
            extras = {"agents": list(agents), "missing": list(missing)}
            if version:
                extras["ensemble_version"] = version
            return "summary.started", f"Combining via {name}", name, extras
        case SummaryDelta(summarizer=name, text=text):
            return "summary.delta", "Streaming", name, {"message": text}
        case SummaryRestarted(summarizer=name, model=model, error=error):
            extras = {"model": model, "error": _error(error), "discard": True}
            return "summary.restarted", f"Restarting the summary on {model}", name, extras
        case Done(
            summarizer=name,
            usage=usage,
            timings=timings,
            agents=agents,
            models=models,
            ensemble_version=version,
            finish_reason=finish_reason,
        ):
            extras = {
                "final": True,
                "agents": agents.as_dict(),
                "models": dict(models),
                "usage": {caller: u.as_dict() for caller, u in usage.items()},
                "timings": {
                    "agents_ms": dict(timings.agents_ms),
                    "first_token_ms": timings.first_token_ms,
                    "total_ms": timings.total_ms,
                },
            }
            if version:
                extras["ensemble_version"] = version
            if finish_reason is not None:
                extras["finish_reason"] = finish_reason
            return "done", "Completed", name, extras
        case Failed(source=source, error=error, usage=usage, agents=agents):
            extras = {
                "final": True,
                "error": _error(error),
                "usage": {caller: u.as_dict() for caller, u in usage.items()},
            }
            if agents is not None:
                extras["agents"] = agents.as_dict()
            return "error", "error", source, extras


class SseEncoder:
    """Numbers the events of one stream and frames each as `id`, `event` and `data` lines."""

    def __init__(
        self, *, message_id: str, conversation_id: str | None, with_charge: bool = False
    ) -> None:
        self._message_id = message_id
        self._conversation_id = conversation_id
        # With rate limits on, `done` says what the request was charged.
        self._with_charge = with_charge
        self._next_id = 1

    def encode(self, event: Event) -> bytes:
        return frame(*self.encode_parts(event))

    def encode_parts(self, event: Event) -> tuple[int, str, str]:
        """(id, type, data) of `event`'s frame: what a replay needs to send it again."""
        event_type, status, source, extras = describe(event)
        payload: dict[str, Any] = {"message_id": self._message_id}
        if self._conversation_id is not None:
            payload["conversation_id"] = self._conversation_id
        payload |= {"type": event_type, "status": status, "source": source, "final": False}
        payload |= extras
        if self._with_charge and isinstance(event, Done):
            tokens = sum(u.prompt_tokens + u.completion_tokens for u in event.usage.values())
            payload["charged"] = {"requests": 1, "tokens": tokens}
        event_id, self._next_id = self._next_id, self._next_id + 1
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return event_id, event_type, data


def frame(event_id: int, event_type: str, data: str) -> bytes:
    """One SSE event; every line of `data` gets its own `data:` prefix."""
    lines = [f"id: {event_id}", f"event: {event_type}"]
    lines.extend(f"data: {line}" for line in data.split("\n"))
    # A lone surrogate from a provider is valid JSON but not UTF-8; replace it, never fail.
    return ("\n".join(lines) + "\n\n").encode("utf-8", errors="replace")
