"""The caller's history: GET /api/conversations, GET and DELETE /api/conversations/{id},
GET /api/messages/{message_id}. JSON, the error envelope, every query scoped to the caller
(an admin may add `?user=` for another user of its tenant); a database that does not answer
is a 503 (app.py maps StorageUnavailable).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Blueprint, Response, current_app

from ...errors import NotFound, StorageDisabled
from ...resources import Resources
from ...shapes import TokenUsage
from ...storage import (
    AgentAnswer,
    ConversationSummary,
    MessageDetail,
    Store,
)
from ..access import current_principal, requires
from ..contract import schemas
from ..contract.document import documented, empty, returns
from ..contract.empty import no_content
from ..contract.schemas import read_query, respond
from ..contract.validation import checked_id

conversations = Blueprint("conversations", __name__)


def store() -> Store:
    resources: Resources = current_app.extensions["fanout"]
    if resources.store is None:
        raise StorageDisabled()
    return resources.store


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _summary(summary: ConversationSummary) -> schemas.ConversationSummary:
    return schemas.ConversationSummary(
        id=summary.id,
        title=summary.title,
        created_at=summary.created_at.isoformat(),
        updated_at=summary.updated_at.isoformat(),
    )


def _agent(answer: AgentAnswer) -> schemas.AgentAnswer:
    return schemas.AgentAnswer(
        agent=answer.agent,
        model=answer.model,
        outcome=answer.outcome,
        text=answer.text,
        error=schemas.ErrorCode(code=answer.error_code) if answer.error_code else None,
        attempts=answer.attempts,
        latency_ms=answer.latency_ms,
        usage=(
            None
            if answer.prompt_tokens is None
            else TokenUsage(
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens or 0,
            )
        ),
        phase=answer.phase,
        round=answer.round,
        cost_usd=answer.cost_usd,
    )


def _message(message: MessageDetail) -> schemas.Message:
    return schemas.Message.model_validate(
        {
            "message_id": message.message_id,
            "version": message.version,
            "parent": (
                {"message_id": message.parent[0], "version": message.parent[1]}
                if message.parent is not None
                else None
            ),
            "current": message.current,
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
            "cost": message.cost,
            "trace_id": message.trace_id,
            "created_at": message.created_at.isoformat(),
            "finished_at": _time(message.finished_at),
            "agents": [_agent(answer) for answer in message.agents],
        }
    )


def _encode_cursor(summary: ConversationSummary) -> str:
    return f"{(summary.updated_at - _EPOCH) // _MICROSECOND}.{summary.id}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names (the query has checked its form: CURSOR_PATTERN)."""
    microseconds, _, conversation_id = cursor.partition(".")
    return _EPOCH + int(microseconds) * _MICROSECOND, conversation_id


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@conversations.get("/api/conversations")
@requires("history")
@documented(
    "Your conversations, newest first",
    tag="conversations",
    query=schemas.HistoryQuery,
    replies={200: returns(schemas.ConversationPage)},
    errors=(400, 404, 503),
)
async def list_conversations() -> dict[str, Any]:
    query = read_query(schemas.HistoryQuery)
    before = _decode_cursor(query.cursor) if query.cursor else None
    page = await store().conversations(
        current_principal(), limit=query.limit + 1, before=before, user=query.user
    )
    shown = page[: query.limit]
    return respond(
        schemas.ConversationPage(
            conversations=[_summary(c) for c in shown],
            next_cursor=_encode_cursor(shown[-1]) if len(page) > query.limit else None,
        )
    )


@conversations.get("/api/conversations/<conversation_id>")
@requires("history")
@documented(
    "A conversation with its messages, each with every agent's answer",
    tag="conversations",
    query=schemas.OwnerQuery,
    replies={200: returns(schemas.Conversation)},
    errors=(400, 404, 503),
)
async def get_conversation(conversation_id: str) -> dict[str, Any]:
    checked_id(conversation_id, "conversation_id")
    query = read_query(schemas.OwnerQuery)
    found = await store().conversation(current_principal(), conversation_id, user=query.user)
    if found is None:
        raise NotFound("no such conversation")
    summary, turns = found
    conversation = schemas.Conversation(
        **_summary(summary).model_dump(), messages=[_message(m) for m in turns]
    )
    return respond(conversation)


@conversations.delete("/api/conversations/<conversation_id>")
@requires("history")
@documented(
    "Delete a conversation and its messages",
    tag="conversations",
    query=schemas.OwnerQuery,
    replies={204: empty("Deleted")},
    errors=(400, 404, 503),
)
async def delete_conversation(conversation_id: str) -> Response:
    checked_id(conversation_id, "conversation_id")
    query = read_query(schemas.OwnerQuery)
    deleted = await store().delete_conversation(
        current_principal(), conversation_id, user=query.user
    )
    if not deleted:
        raise NotFound("no such conversation")
    return no_content()


@conversations.get("/api/messages/<message_id>")
@requires("history")
@documented(
    "One message: its question, status, summary, usage, timings and every agent's answer",
    tag="conversations",
    query=schemas.OwnerQuery,
    replies={200: returns(schemas.Message)},
    errors=(400, 404, 503),
)
async def get_message(message_id: str) -> dict[str, Any]:
    checked_id(message_id, "message_id")
    query = read_query(schemas.OwnerQuery)
    message = await store().message(current_principal(), message_id, user=query.user)
    if message is None:
        raise NotFound("no such message")
    return respond(_message(message))
