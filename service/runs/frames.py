"""A run's events as frames: each numbered in its stream and its data made JSON, once. The
frame is what a live reader, the store and the relay all keep and send (api/writers/sse.py
writes it as Server-Sent Events, api/writers/chat_format.py as OpenAI's chunks).

    encoder = FrameEncoder(message_id="m-1", conversation_id=None)
    encoder.encode_parts(AgentStarted(agent="llm-1"))
    # (1, "agent.started", '{"message_id":"m-1",...}')
"""

from __future__ import annotations

import json
from typing import Any

from ..events import Done, Event, spent_tokens


class FrameEncoder:
    """Numbers the events of one stream and makes each one's data JSON."""

    def __init__(
        self, *, message_id: str, conversation_id: str | None, with_charge: bool = False
    ) -> None:
        self._message_id = message_id
        self._conversation_id = conversation_id
        # With rate limits on, `done` says what the request was charged.
        self._with_charge = with_charge
        self._next_id = 1

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
            payload["charged"] = {"requests": 1, "tokens": spent_tokens(event)}
        event_id, self._next_id = self._next_id, self._next_id + 1
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return event_id, event_type, data
