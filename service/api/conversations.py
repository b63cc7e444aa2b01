"""The caller's history: GET /api/conversations, GET and DELETE /api/conversations/{id},
GET /api/messages/{message_id}. JSON, the error envelope, every query scoped to the caller
(an admin may add `?user=` for another user of its tenant); a database that does not answer
is a 503 (app.py maps StorageUnavailable).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from quart import Blueprint, Response, current_app, request

from ..errors import InvalidRequest, NotFound, StorageDisabled
from ..resources import Resources
from ..storage import (
    AgentAnswer,
    ConversationSummary,
    MessageDetail,
    Store,
)
from .access import current_principal, requires
from .empty import no_content

conversations = Blueprint("conversations", __name__)

MAX_ID = 128
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def store() -> Store:
    resources: Resources = current_app.extensions["fanout"]
    if resources.store is None:
        raise StorageDisabled()
    return resources.store


def checked_id(value: str, field: str) -> str:
    if not 1 <= len(value) <= MAX_ID:
        raise InvalidRequest(f"{field}: must be 1 to {MAX_ID} characters", field=field)
    return value


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _conversation(summary: ConversationSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "title": summary.title,
        "created_at": _time(summary.created_at),
        "updated_at": _time(summary.updated_at),
    }


def _agent(answer: AgentAnswer) -> dict[str, Any]:
    return {
        "agent": answer.agent,
        "model": answer.model,
        "outcome": answer.outcome,
        "text": answer.text,
        "error": {"code": answer.error_code} if answer.error_code else None,
        "attempts": answer.attempts,
        "latency_ms": answer.latency_ms,
        "usage": (
            None
            if answer.prompt_tokens is None
            else {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
            }
        ),
    }


def message_json(message: MessageDetail) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "conversation_id": message.conversation_id,
        "question": message.question,
        "status": message.status,
        "summary": message.summary,
        "error": {"code": message.error_code} if message.error_code else None,
        "ensemble": message.ensemble,
        "ensemble_version": message.ensemble_version,
        "models": message.models,
        "usage": message.usage,
        "timings": message.timings,
        "trace_id": message.trace_id,
        "created_at": _time(message.created_at),
        "finished_at": _time(message.finished_at),
        "agents": [_agent(answer) for answer in message.agents],
    }


def _encode_cursor(summary: ConversationSummary) -> str:
    raw = json.dumps([summary.updated_at.isoformat(), summary.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, conversation_id = json.loads(raw)
        return datetime.fromisoformat(updated_at), str(conversation_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidRequest("cursor: not a cursor this server gave", field="cursor") from exc


def _named_user() -> str | None:
    """`?user=` on a history route: an admin reads that user of its own tenant."""
    user = request.args.get("user")
    return checked_id(user, "user") if user is not None else None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return int(value)


@conversations.get("/api/conversations")
@requires("history")
async def list_conversations() -> dict[str, Any]:
    limit = _limit(request.args.get("limit"))
    cursor = request.args.get("cursor")
    before = _decode_cursor(cursor) if cursor else None
    page = await store().conversations(
        current_principal(), limit=limit + 1, before=before, user=_named_user()
    )
    shown = page[:limit]
    return {
        "conversations": [_conversation(c) for c in shown],
        "next_cursor": _encode_cursor(shown[-1]) if len(page) > limit else None,
    }


@conversations.get("/api/conversations/<conversation_id>")
@requires("history")
async def get_conversation(conversation_id: str) -> dict[str, Any]:
    checked_id(conversation_id, "conversation_id")
    found = await store().conversation(current_principal(), conversation_id, user=_named_user())
    if found is None:
        raise NotFound("no such conversation")
    summary, turns = found
    return {**_conversation(summary), "messages": [message_json(m) for m in turns]}


@conversations.delete("/api/conversations/<conversation_id>")
@requires("history")
async def delete_conversation(conversation_id: str) -> Response:
    checked_id(conversation_id, "conversation_id")
    deleted = await store().delete_conversation(
        current_principal(), conversation_id, user=_named_user()
    )
    if not deleted:
        raise NotFound("no such conversation")
    return no_content()


@conversations.get("/api/messages/<message_id>")
@requires("history")
async def get_message(message_id: str) -> dict[str, Any]:
    checked_id(message_id, "message_id")
    message = await store().message(current_principal(), message_id, user=_named_user())
    if message is None:
        raise NotFound("no such message")
    return message_json(message)
