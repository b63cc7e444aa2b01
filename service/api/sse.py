"""The one place pipeline events become Server-Sent Events bytes.

encoder = SseEncoder(message_id="m-1", conversation_id=None)
encoder.encode(AgentStarted(agent="llm-1"))
# b'id: 1\\nevent: agent.started\\ndata: {"message_id":"m-1",...}\\n\\n'
"""

from __future__ import annotations

import json
from typing import Any

from ..pipeline import Done, Event

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


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
        event_type = event.KIND
        status, source, extras = event.wire()
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
