"""The one place a run's frames become Server-Sent Events bytes.

encoder = SseEncoder(message_id="m-1", conversation_id=None)
encoder.encode(AgentStarted(agent="llm-1"))
# b'id: 1\\nevent: agent.started\\ndata: {"message_id":"m-1",...}\\n\\n'
"""

from __future__ import annotations

from ...events import Event
from ...runs.frames import FrameEncoder

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class SseEncoder(FrameEncoder):
    """A FrameEncoder that writes each event straight to its SSE bytes."""

    def encode(self, event: Event) -> bytes:
        return frame(*self.encode_parts(event))


def frame(event_id: int, event_type: str, data: str) -> bytes:
    """One SSE event; every line of `data` gets its own `data:` prefix."""
    lines = [f"id: {event_id}", f"event: {event_type}"]
    lines.extend(f"data: {line}" for line in data.split("\n"))
    # A lone surrogate from a provider is valid JSON but not UTF-8; replace it, never fail.
    return ("\n".join(lines) + "\n\n").encode("utf-8", errors="replace")
