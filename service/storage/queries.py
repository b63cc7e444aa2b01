"""The queries: small functions that take a connection and the owner, and nothing global.

Every function that reads or writes a client's data takes its `Owner` (tenant and user) and
filters by both: there is no query that could return another owner's row.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from .records import (
    AgentAnswer,
    ConversationSummary,
    ExistingMessage,
    HistoryTurn,
    MessageDetail,
    NewMessage,
    Owner,
    Phase,
    Status,
    StoredEnd,
    StoredEvent,
)
from .schema import agent_answers, conversations, instances, message_events, messages, usage

TITLE_CHARS = 80


def _of(table: Table, owner: Owner) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The conditions that keep a query to `owner`'s rows of `table`."""
    return table.c.tenant == owner.tenant, table.c.owner == owner.user


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back; every datetime stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_conversation_id() -> str:
    return "c_" + secrets.token_urlsafe(12)


def _title(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def history(
    connection: Connection, owner: Owner, conversation_id: str, max_chars: int
) -> tuple[HistoryTurn, ...]:
    """The conversation's completed turns, oldest first: as many of the newest as fit."""
    rows = connection.execute(
        select(messages.c.question, messages.c.summary)
        .where(
            *_of(messages, owner),
            messages.c.conversation_id == conversation_id,
            messages.c.status == "completed",
        )
        .order_by(messages.c.pk.desc())
    )
    kept: list[HistoryTurn] = []
    used = 0
    for row in rows:
        size = len(row.question) + len(row.summary or "")
        if used + size > max_chars:
            break
        used += size
        kept.append(HistoryTurn(question=row.question, summary=row.summary or ""))
    return tuple(reversed(kept))


# The statements a stream writes, built once: building a statement (and its cache key) cost
# more than running it. Each is run with a dict (or a list of dicts) of its bound values.
_FIND_MESSAGE = select(
    messages.c.pk,
    messages.c.conversation_id,
    messages.c.question,
    messages.c.status,
    messages.c.instance,
).where(
    messages.c.tenant == bindparam("tenant"),
    messages.c.owner == bindparam("owner"),
    messages.c.message_id == bindparam("message_id"),
)
_INSERT_EVENTS = insert(message_events)
_INSERT_AGENT = insert(agent_answers)
_FINISH_MESSAGE = (
    update(messages)
    .where(messages.c.pk == bindparam("b_pk"), messages.c.status == "running")
    .values(
        status=bindparam("b_status"),
        summary=bindparam("b_summary"),
        error_code=bindparam("b_error_code"),
        models=bindparam("b_models"),
        usage=bindparam("b_usage"),
        timings=bindparam("b_timings"),
        finished_at=bindparam("b_finished_at"),
    )
)
_AGENT_TOKENS = (
    update(agent_answers)
    .where(
        agent_answers.c.message_pk == bindparam("b_pk"),
        agent_answers.c.agent == bindparam("b_caller"),
    )
    .values(prompt_tokens=bindparam("b_prompt"), completion_tokens=bindparam("b_completion"))
)


# Written as SQL: SQLAlchemy cannot cache the compiled form of its ON CONFLICT constructs,
# and compiling them was most of a stream's storage cost. SQLite (3.35+) and PostgreSQL
# read these the same way; the types make the dates stored as every other date is.
_WHEN = DateTime(timezone=True)
# Create the conversation, or mark it updated: one statement, so two first messages of one
# conversation sent at once both land in it.
_UPSERT_CONVERSATION = text(
    "INSERT INTO conversations (tenant, owner, id, title, created_at, updated_at) "
    "VALUES (:tenant, :owner, :id, :title, :created_at, :updated_at) "
    "ON CONFLICT (tenant, owner, id) DO UPDATE SET updated_at = excluded.updated_at"
).bindparams(bindparam("created_at", type_=_WHEN), bindparam("updated_at", type_=_WHEN))
# The message, unless the owner already has one by its id (then no row comes back).
_INSERT_MESSAGE = text(
    "INSERT INTO messages (tenant, owner, message_id, conversation_id, question, status, "
    "ensemble, ensemble_version, trace_id, instance, created_at) "
    "VALUES (:tenant, :owner, :message_id, :conversation_id, :question, 'running', :ensemble, "
    ":ensemble_version, :trace_id, :instance, :created_at) "
    "ON CONFLICT (tenant, owner, message_id) DO NOTHING RETURNING pk"
).bindparams(bindparam("created_at", type_=_WHEN))


def find_message(connection: Connection, owner: Owner, message_id: str) -> ExistingMessage | None:
    row = connection.execute(
        _FIND_MESSAGE, {"tenant": owner.tenant, "owner": owner.user, "message_id": message_id}
    ).first()
    if row is None:
        return None
    return ExistingMessage(
        pk=row.pk,
        conversation_id=row.conversation_id,
        question=row.question,
        status=cast(Status, row.status),
        instance=row.instance,
    )


def begin_message(
    connection: Connection,
    owner: Owner,
    *,
    message_id: str,
    conversation_id: str | None,
    question: str,
    ensemble: str,
    ensemble_version: str,
    trace_id: str | None,
    instance: str,
    history_max_chars: int,
) -> NewMessage | ExistingMessage:
    """Store a new `running` message, or return the owner's message with this id.

    Most messages start a conversation: those are inserted at once, and only when the
    insert finds the id taken (a message sent again) is the stored one read, and the
    conversation just made for it removed. A message that continues a conversation is
    looked up first, so that sending it again changes nothing."""
    new_conversation = conversation_id is None
    if not new_conversation:
        existing = find_message(connection, owner, message_id)
        if existing is not None:
            return existing
    started = now()
    earlier: tuple[HistoryTurn, ...] = ()
    if conversation_id is None:
        conversation_id = new_conversation_id()  # new: nothing earlier to read
    else:
        earlier = history(connection, owner, conversation_id, history_max_chars)
    connection.execute(
        _UPSERT_CONVERSATION,
        {
            "tenant": owner.tenant,
            "owner": owner.user,
            "id": conversation_id,
            "title": _title(question),
            "created_at": started,
            "updated_at": started,
        },
    )
    pk = connection.execute(
        _INSERT_MESSAGE,
        {
            "tenant": owner.tenant,
            "owner": owner.user,
            "message_id": message_id,
            "conversation_id": conversation_id,
            "question": question,
            "ensemble": ensemble,
            "ensemble_version": ensemble_version,
            "trace_id": trace_id,
            "instance": instance,
            "created_at": started,
        },
    ).scalar_one_or_none()
    if pk is None:
        # The id is taken: sent before (a replay), or twice at once (the other runs it).
        if new_conversation:
            connection.execute(
                delete(conversations).where(
                    *_of(conversations, owner), conversations.c.id == conversation_id
                )
            )
        raced = find_message(connection, owner, message_id)
        if raced is None:  # pragma: no cover - the conflicting row cannot vanish here
            raise RuntimeError(f"message {message_id!r} conflicted, then was not found")
        return raced
    return NewMessage(pk=pk, conversation_id=conversation_id, history=earlier)


# Adds to the ledger's line (one statement, so two runs ending at once both count).
_ADD_USAGE = text(
    'INSERT INTO usage (tenant, "user", key_id, model, day, calls, prompt_tokens, '
    "completion_tokens) VALUES (:tenant, :user, :key_id, :model, :day, :calls, "
    ":prompt_tokens, :completion_tokens) "
    'ON CONFLICT (tenant, "user", key_id, model, day) DO UPDATE SET '
    "calls = usage.calls + excluded.calls, "
    "prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = usage.completion_tokens + excluded.completion_tokens"
)


def record_phases(connection: Connection, phases: Sequence[Phase]) -> None:
    """Several messages' phases in one transaction: a few statements for all of them."""
    events = [
        {
            "message_pk": p.message_pk,
            "last_event_id": p.events[-1].event_id,
            "events": json.dumps([[e.event_id, e.type, e.data] for e in p.events]),
        }
        for p in phases
        if p.events
    ]
    if events:
        connection.execute(_INSERT_EVENTS, events)
    answers = [(p.message_pk, answer) for p in phases for answer in p.agents]
    if answers:
        connection.execute(
            _INSERT_AGENT,
            [
                {
                    "message_pk": pk,
                    "agent": answer.agent,
                    "model": answer.model,
                    "outcome": answer.outcome,
                    "text": answer.text,
                    "error_code": answer.error_code,
                    "attempts": answer.attempts,
                    "latency_ms": answer.latency_ms,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                }
                for pk, answer in answers
            ],
        )
    ends = [(p.message_pk, p.end) for p in phases if p.end is not None]
    if ends:
        finished_at = now()
        connection.execute(
            _FINISH_MESSAGE,
            [
                {
                    "b_pk": pk,
                    "b_status": end.status,
                    "b_summary": end.summary,
                    "b_error_code": end.error_code,
                    "b_models": end.models,
                    "b_usage": end.usage,
                    "b_timings": end.timings,
                    "b_finished_at": finished_at,
                }
                for pk, end in ends
            ],
        )
        tokens = [
            {
                "b_pk": pk,
                "b_caller": caller,
                "b_prompt": used.get("prompt_tokens"),
                "b_completion": used.get("completion_tokens"),
            }
            for pk, end in ends
            for caller, used in end.usage.items()
        ]
        if tokens:
            connection.execute(_AGENT_TOKENS, tokens)
    lines = [asdict(line) for p in phases for line in p.usage]
    for line in lines:
        # One at a time: the same line twice in one executemany would conflict with itself.
        connection.execute(_ADD_USAGE, line)


def stored_end(connection: Connection, owner: Owner, message_id: str) -> StoredEnd | None:
    """The last stored event of the owner's message; None if there is no such message."""
    row = connection.execute(
        select(messages.c.pk, messages.c.conversation_id).where(
            *_of(messages, owner), messages.c.message_id == message_id
        )
    ).first()
    if row is None:
        return None
    last_batch = connection.execute(
        select(message_events.c.events)
        .where(message_events.c.message_pk == row.pk)
        .order_by(message_events.c.last_event_id.desc())
        .limit(1)
    ).scalar()
    if last_batch is None:
        return StoredEnd(0, None, row.conversation_id)
    event_id, event_type, _ = json.loads(last_batch)[-1]
    return StoredEnd(event_id, event_type, row.conversation_id)


def events_after(
    connection: Connection, owner: Owner, message_id: str, after: int
) -> tuple[Status, tuple[StoredEvent, ...]] | None:
    """The message's status and its events with an id above `after`; None if no such
    message of this owner."""
    row = connection.execute(
        select(messages.c.pk, messages.c.status).where(
            *_of(messages, owner), messages.c.message_id == message_id
        )
    ).first()
    if row is None:
        return None
    rows = connection.execute(
        select(message_events.c.events)
        .where(message_events.c.message_pk == row.pk, message_events.c.last_event_id > after)
        .order_by(message_events.c.last_event_id)
    ).scalars()
    stored = tuple(
        StoredEvent(event_id=event_id, type=event_type, data=data)
        for events in rows
        for event_id, event_type, data in json.loads(events)
        if event_id > after
    )
    return cast(Status, row.status), stored


def list_conversations(
    connection: Connection, owner: Owner, *, limit: int, before: tuple[datetime, str] | None
) -> list[ConversationSummary]:
    """The owner's conversations, newest first; `before` is the (updated_at, id) cursor."""
    query = select(conversations).where(*_of(conversations, owner))
    if before is not None:
        updated_at, conversation_id = before
        query = query.where(
            or_(
                conversations.c.updated_at < updated_at,
                and_(
                    conversations.c.updated_at == updated_at,
                    conversations.c.id < conversation_id,
                ),
            )
        )
    rows = connection.execute(
        query.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc()).limit(limit)
    )
    return [
        ConversationSummary(
            id=row.id,
            title=row.title,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )
        for row in rows
    ]


def get_conversation(
    connection: Connection, owner: Owner, conversation_id: str
) -> tuple[ConversationSummary, list[MessageDetail]] | None:
    row = connection.execute(
        select(conversations).where(
            *_of(conversations, owner), conversations.c.id == conversation_id
        )
    ).first()
    if row is None:
        return None
    summary = ConversationSummary(
        id=row.id,
        title=row.title,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
    rows = connection.execute(
        select(messages)
        .where(*_of(messages, owner), messages.c.conversation_id == conversation_id)
        .order_by(messages.c.pk)
    ).all()
    return summary, _details(connection, rows)


def get_message(connection: Connection, owner: Owner, message_id: str) -> MessageDetail | None:
    rows = connection.execute(
        select(messages).where(*_of(messages, owner), messages.c.message_id == message_id)
    ).all()
    details = _details(connection, rows)
    return details[0] if details else None


def _details(connection: Connection, rows: Sequence[Any]) -> list[MessageDetail]:
    answers: dict[int, list[AgentAnswer]] = {row.pk: [] for row in rows}
    if answers:
        for answer in connection.execute(
            select(agent_answers)
            .where(agent_answers.c.message_pk.in_(list(answers)))
            .order_by(agent_answers.c.message_pk, agent_answers.c.agent)
        ):
            answers[answer.message_pk].append(
                AgentAnswer(
                    agent=answer.agent,
                    model=answer.model,
                    outcome=answer.outcome,
                    text=answer.text,
                    error_code=answer.error_code,
                    attempts=answer.attempts,
                    latency_ms=answer.latency_ms,
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens,
                )
            )
    return [
        MessageDetail(
            message_id=row.message_id,
            conversation_id=row.conversation_id,
            question=row.question,
            status=row.status,
            summary=row.summary,
            error_code=row.error_code,
            ensemble=row.ensemble,
            ensemble_version=row.ensemble_version,
            models=row.models or {},
            usage=row.usage or {},
            timings=row.timings,
            trace_id=row.trace_id,
            created_at=as_utc(row.created_at),
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            agents=tuple(answers[row.pk]),
        )
        for row in rows
    ]


def delete_conversation(connection: Connection, owner: Owner, conversation_id: str) -> bool:
    """Delete the conversation with its messages; False if the owner has none by that id."""
    pks = select(messages.c.pk).where(
        *_of(messages, owner), messages.c.conversation_id == conversation_id
    )
    _delete_messages(connection, pks)
    deleted = connection.execute(
        delete(conversations).where(
            *_of(conversations, owner), conversations.c.id == conversation_id
        )
    ).rowcount
    return bool(deleted)


def _delete_messages(connection: Connection, pks: Any) -> None:
    # Explicit, not by cascade alone: SQLite enforces ON DELETE CASCADE only per connection
    # setting, and the order keeps every foreign key satisfied on both databases.
    connection.execute(delete(message_events).where(message_events.c.message_pk.in_(pks)))
    connection.execute(delete(agent_answers).where(agent_answers.c.message_pk.in_(pks)))
    connection.execute(delete(messages).where(messages.c.pk.in_(pks)))


def usage_report(
    connection: Connection,
    tenant: str,
    *,
    user: str | None,
    since: str | None,
    until: str | None,
) -> list[dict[str, Any]]:
    """The tenant's usage (one user's, if given) per day, user and model, days inclusive."""
    query = select(
        usage.c.day,
        usage.c.user,
        usage.c.model,
        func.sum(usage.c.calls).label("calls"),
        func.sum(usage.c.prompt_tokens).label("prompt_tokens"),
        func.sum(usage.c.completion_tokens).label("completion_tokens"),
    ).where(usage.c.tenant == tenant)
    if user is not None:
        query = query.where(usage.c.user == user)
    if since is not None:
        query = query.where(usage.c.day >= since)
    if until is not None:
        query = query.where(usage.c.day <= until)
    query = query.group_by(usage.c.day, usage.c.user, usage.c.model).order_by(
        usage.c.day, usage.c.user, usage.c.model
    )
    return [
        {
            "day": row.day,
            "user": row.user,
            "model": row.model,
            "calls": int(row.calls),
            "prompt_tokens": int(row.prompt_tokens),
            "completion_tokens": int(row.completion_tokens),
        }
        for row in connection.execute(query)
    ]


# --- housekeeping: not a client's data, so no owner -------------------------------------


def heartbeat(connection: Connection, instance: str) -> None:
    beat = now()
    found = connection.execute(
        update(instances).where(instances.c.id == instance).values(heartbeat_at=beat)
    ).rowcount
    if not found:
        connection.execute(insert(instances).values(id=instance, heartbeat_at=beat))


def forget_instance(connection: Connection, instance: str) -> None:
    connection.execute(delete(instances).where(instances.c.id == instance))


def mark_interrupted(
    connection: Connection, *, this_instance: str, expiry: timedelta, starting: bool
) -> int:
    """Messages left `running` by an instance that is gone (its heartbeat expired or was
    removed) become `interrupted`; when `starting`, so do this instance's own, left by the
    process that had its name before. Returns how many."""
    alive = select(instances.c.id).where(instances.c.heartbeat_at >= now() - expiry)
    expired = messages.c.instance.not_in(alive)
    gone = (
        or_(expired, messages.c.instance == this_instance)
        if starting
        else and_(expired, messages.c.instance != this_instance)
    )
    return int(
        connection.execute(
            update(messages)
            .where(messages.c.status == "running", gone)
            .values(status="interrupted", error_code="interrupted", finished_at=now())
        ).rowcount
    )


def delete_expired(connection: Connection, *, older_than: datetime) -> int:
    """Conversations untouched since `older_than`, with their messages. Returns how many."""
    old = select(conversations.c.tenant, conversations.c.owner, conversations.c.id).where(
        conversations.c.updated_at < older_than
    )
    doomed = list(connection.execute(old))
    for tenant, user, conversation_id in doomed:
        delete_conversation(connection, Owner(tenant=tenant, user=user), conversation_id)
    return len(doomed)
