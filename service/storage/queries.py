"""The queries: small functions that take a connection and the owner, and nothing global.

Every function that reads or writes a client's data takes its `Owner` (tenant and user) and
filters by both: there is no query that could return another owner's row.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Float,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from .history_budget import newest_that_fit
from .records import (
    AgentAnswer,
    ConversationSummary,
    ExistingMessage,
    HistoryTurn,
    MessageDetail,
    MessageStart,
    NewMessage,
    Owner,
    Phase,
    Status,
    StoredEnd,
    StoredEvent,
    UnknownMessage,
    UnknownParent,
    UsageLine,
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
    connection: Connection, owner: Owner, conversation_id: str, max_chars: int, *, after: int | None
) -> tuple[HistoryTurn, ...]:
    """The completed turns on the branch that ends with the turn `after` (a message's pk; None:
    no turn before), oldest first: as many of the newest as fit."""
    if after is None:
        return ()
    branch = _branch(connection, owner, conversation_id)
    completed = [
        HistoryTurn(question=row.question, summary=row.summary or "")
        for row in _path(branch, after)
        if row.status == "completed"
    ]
    kept = newest_that_fit((len(t.question) + len(t.summary) for t in completed), max_chars)
    return tuple(reversed(completed[:kept]))


def _branch(connection: Connection, owner: Owner, conversation_id: str) -> dict[int, Any]:
    """The conversation's turns by pk, with what walking a branch needs."""
    rows = connection.execute(
        select(
            messages.c.pk,
            messages.c.parent_pk,
            messages.c.question,
            messages.c.summary,
            messages.c.status,
        ).where(*_of(messages, owner), messages.c.conversation_id == conversation_id)
    )
    return {row.pk: row for row in rows}


def _path(turns: dict[int, Any], last: int | None) -> list[Any]:
    """The turns from `last` back to the first, following parents (each older than its child)."""
    path = []
    while last is not None and (row := turns.get(last)) is not None:
        path.append(row)
        last = row.parent_pk if row.parent_pk is not None and row.parent_pk < last else None
    return path


def _leaf(connection: Connection, owner: Owner, conversation_id: str) -> int | None:
    """The conversation's newest turn: where its current branch ends."""
    return connection.execute(
        select(func.max(messages.c.pk)).where(
            *_of(messages, owner), messages.c.conversation_id == conversation_id
        )
    ).scalar()


def _turn(
    connection: Connection, owner: Owner, conversation_id: str, message_id: str, version: int
) -> int:
    """The pk of the owner's message `message_id` at `version` in the conversation: the turn
    a new message was asked to follow. Raises UnknownParent if there is none."""
    pk = connection.execute(
        select(messages.c.pk).where(
            *_of(messages, owner),
            messages.c.conversation_id == conversation_id,
            messages.c.message_id == message_id,
            messages.c.version == version,
        )
    ).scalar()
    if pk is None:
        raise UnknownParent(message_id)
    return int(pk)


# The statements a stream writes, built once: building a statement (and its cache key) cost
# more than running it. Each is run with a dict (or a list of dicts) of its bound values.
# The newest version of the owner's message by its id.
_FIND_MESSAGE = (
    select(
        messages.c.pk,
        messages.c.conversation_id,
        messages.c.question,
        messages.c.status,
        messages.c.instance,
        messages.c.version,
        messages.c.parent_pk,
        messages.c.ensemble,
    )
    .where(
        messages.c.tenant == bindparam("tenant"),
        messages.c.owner == bindparam("owner"),
        messages.c.message_id == bindparam("message_id"),
    )
    .order_by(messages.c.version.desc())
    .limit(1)
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
        cost=bindparam("b_cost"),
        finished_at=bindparam("b_finished_at"),
    )
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
# The message, unless the owner already has this version of its id (then no row comes back).
_INSERT_MESSAGE = text(
    "INSERT INTO messages (tenant, owner, message_id, version, parent_pk, conversation_id, "
    "question, status, ensemble, ensemble_version, trace_id, instance, created_at) "
    "VALUES (:tenant, :owner, :message_id, :version, :parent_pk, :conversation_id, :question, "
    "'running', :ensemble, :ensemble_version, :trace_id, :instance, :created_at) "
    "ON CONFLICT (tenant, owner, message_id, version) DO NOTHING RETURNING pk"
).bindparams(bindparam("created_at", type_=_WHEN))
# Tries at a version: another request may take the one chosen (two edits at once).
_VERSION_TRIES = 5


def find_message(connection: Connection, owner: Owner, message_id: str) -> Any:
    """The newest version of the owner's message `message_id` (a row), or None."""
    return connection.execute(
        _FIND_MESSAGE, {"tenant": owner.tenant, "owner": owner.user, "message_id": message_id}
    ).first()


def _existing(row: Any) -> ExistingMessage:
    return ExistingMessage(
        pk=row.pk,
        conversation_id=row.conversation_id,
        question=row.question,
        status=cast(Status, row.status),
        instance=row.instance,
        version=row.version,
    )


@dataclass(frozen=True)
class _Plan:
    """Where a new message goes: its version, conversation (None: a new one) and parent."""

    version: int
    conversation_id: str | None
    parent: int | None
    question: str


def _plan(newest: Any, start: MessageStart) -> _Plan | None:
    """What sending `message_id` again means, given its newest version (None: the
    same message sent again, to replay or join):

    - `regenerate`: the same turn again, a new version beside it (same parent);
    - the same text, conversation and ensemble: the same message (None);
    - other text in the same conversation: an edit, a new version beside it;
    - other text and no conversation, or another one: a new message there, next version.
    """
    conversation_id, question = start.conversation_id, start.question
    if start.regenerate:
        text = question if question is not None else newest.question
        return _Plan(newest.version + 1, newest.conversation_id, newest.parent_pk, text)
    assert question is not None
    same_conversation = conversation_id in (None, newest.conversation_id)
    if question == newest.question and newest.ensemble == start.ensemble and same_conversation:
        return None
    if conversation_id == newest.conversation_id:
        return _Plan(newest.version + 1, conversation_id, newest.parent_pk, question)
    return _Plan(newest.version + 1, conversation_id, _NEW_TURN, question)


# A plan's parent when the message is a new turn of its conversation: the newest turn there.
_NEW_TURN = -1


def begin_message(
    connection: Connection, owner: Owner, start: MessageStart, *, instance: str
) -> NewMessage | ExistingMessage:
    """Store a new `running` message, or return the owner's message with this id when it
    is the same one sent again (see `_plan` for what another text, an edit or a regenerate
    makes). `question` None is a regenerate of the stored text.

    Most messages start a conversation with a new id: those are inserted at once, and only
    when the insert finds the id taken is the stored one read, and the conversation just
    made for it removed. Raises UnknownMessage for a regenerate of an id never sent."""
    message_id = start.message_id
    newest = None
    if start.conversation_id is not None or start.regenerate:
        newest = find_message(connection, owner, message_id)
        if newest is None and start.regenerate:
            raise UnknownMessage(message_id)
    for _ in range(_VERSION_TRIES):
        if newest is None:
            assert start.question is not None
            plan = _Plan(1, start.conversation_id, _NEW_TURN, start.question)
        else:
            found = _plan(newest, start)
            if found is None:
                return _existing(newest)
            plan = found
        begun = _insert(connection, owner, plan, start, instance=instance)
        if begun is not None:
            return begun
        # The version is taken: sent before (a replay), or at once by another request.
        newest = find_message(connection, owner, message_id)
        if newest is None:  # pragma: no cover - the conflicting row cannot vanish here
            raise RuntimeError(f"message {message_id!r} conflicted, then was not found")
    raise RuntimeError(f"message {message_id!r}: no free version after {_VERSION_TRIES} tries")


def _insert(
    connection: Connection, owner: Owner, plan: _Plan, start: MessageStart, *, instance: str
) -> NewMessage | None:
    """The planned message, stored `running`; None if its version was taken meanwhile."""
    started = now()
    conversation_id = plan.conversation_id
    new_conversation = conversation_id is None
    parent = plan.parent
    if conversation_id is None:
        conversation_id = new_conversation_id()  # new: nothing earlier to read
        parent = None
    elif parent == _NEW_TURN and start.parent is not None:
        parent = _turn(connection, owner, conversation_id, *start.parent)
    elif parent == _NEW_TURN:
        parent = _leaf(connection, owner, conversation_id)
    earlier = history(connection, owner, conversation_id, start.history_max_chars, after=parent)
    connection.execute(
        _UPSERT_CONVERSATION,
        {
            "tenant": owner.tenant,
            "owner": owner.user,
            "id": conversation_id,
            "title": _title(plan.question),
            "created_at": started,
            "updated_at": started,
        },
    )
    pk = connection.execute(
        _INSERT_MESSAGE,
        {
            "tenant": owner.tenant,
            "owner": owner.user,
            "message_id": start.message_id,
            "version": plan.version,
            "parent_pk": parent,
            "conversation_id": conversation_id,
            "question": plan.question,
            "ensemble": start.ensemble,
            "ensemble_version": start.ensemble_version,
            "trace_id": start.trace_id,
            "instance": instance,
            "created_at": started,
        },
    ).scalar_one_or_none()
    if pk is None:
        if new_conversation:
            connection.execute(
                delete(conversations).where(
                    *_of(conversations, owner), conversations.c.id == conversation_id
                )
            )
        return None
    return NewMessage(
        pk=pk,
        conversation_id=conversation_id,
        history=earlier,
        version=plan.version,
        question=plan.question,
    )


# Adds to the ledger's line (one statement, so two runs ending at once both count). A cost
# unknown once (NULL) stays unknown: NULL + x is NULL on both databases.
_ADD_USAGE = text(
    'INSERT INTO usage (tenant, "user", key_id, model, day, calls, prompt_tokens, '
    "completion_tokens, cost_usd) VALUES (:tenant, :user, :key_id, :model, :day, :calls, "
    ":prompt_tokens, :completion_tokens, :cost_usd) "
    'ON CONFLICT (tenant, "user", key_id, model, day) DO UPDATE SET '
    "calls = usage.calls + excluded.calls, "
    "prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = usage.completion_tokens + excluded.completion_tokens, "
    "cost_usd = usage.cost_usd + excluded.cost_usd"
).bindparams(bindparam("cost_usd", type_=Float()))


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
                    "phase": answer.phase,
                    "round": answer.round,
                    "agent": answer.agent,
                    "model": answer.model,
                    "outcome": answer.outcome,
                    "text": answer.text,
                    "error_code": answer.error_code,
                    "attempts": answer.attempts,
                    "latency_ms": answer.latency_ms,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                    "cost_usd": answer.cost_usd,
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
                    "b_cost": end.cost,
                    "b_finished_at": finished_at,
                }
                for pk, end in ends
            ],
        )
    add_usage(connection, [line for p in phases for line in p.usage])


def add_usage(connection: Connection, lines: Sequence[UsageLine]) -> None:
    """Add each line to the usage ledger (tokens, calls and dollars)."""
    for line in lines:
        # One at a time: the same line twice in one executemany would conflict with itself.
        connection.execute(_ADD_USAGE, asdict(line))


def _version_of(connection: Connection, owner: Owner, message_id: str, version: int | None) -> Any:
    """The owner's message `message_id` at `version` (None: the newest), or None."""
    query = select(
        messages.c.pk, messages.c.conversation_id, messages.c.status, messages.c.version
    ).where(*_of(messages, owner), messages.c.message_id == message_id)
    if version is not None:
        return connection.execute(query.where(messages.c.version == version)).first()
    return connection.execute(query.order_by(messages.c.version.desc()).limit(1)).first()


def stored_end(
    connection: Connection, owner: Owner, message_id: str, version: int | None = None
) -> StoredEnd | None:
    """The last stored event of the owner's message; None if there is no such message."""
    row = _version_of(connection, owner, message_id, version)
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
    connection: Connection, owner: Owner, message_id: str, after: int, version: int | None = None
) -> tuple[Status, tuple[StoredEvent, ...]] | None:
    """The message's status and its events with an id above `after`; None if no such
    message of this owner. `version` None: the newest."""
    row = _version_of(connection, owner, message_id, version)
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


def newest_version(connection: Connection, owner: Owner, message_id: str) -> int | None:
    """The version the owner's message id names now; None if it names none."""
    row = _version_of(connection, owner, message_id, None)
    return None if row is None else int(row.version)


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
    return summary, _details(connection, owner, rows)


def get_message(connection: Connection, owner: Owner, message_id: str) -> MessageDetail | None:
    """The newest version of the owner's message `message_id`."""
    rows = connection.execute(
        select(messages)
        .where(*_of(messages, owner), messages.c.message_id == message_id)
        .order_by(messages.c.version.desc())
        .limit(1)
    ).all()
    details = _details(connection, owner, rows)
    return details[0] if details else None


def _details(connection: Connection, owner: Owner, rows: Sequence[Any]) -> list[MessageDetail]:
    answers: dict[int, list[AgentAnswer]] = {row.pk: [] for row in rows}
    if answers:
        for answer in connection.execute(
            select(agent_answers)
            .where(agent_answers.c.message_pk.in_(list(answers)))
            .order_by(
                agent_answers.c.message_pk,
                agent_answers.c.round,
                agent_answers.c.phase,
                agent_answers.c.agent,
            )
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
                    phase=answer.phase,
                    round=answer.round,
                    cost_usd=answer.cost_usd,
                )
            )
    # Each message's parent, named as the API names messages, and whether it is on its
    # conversation's current branch (from the newest turn back to the first).
    names: dict[int, tuple[str, int]] = {}
    current: set[int] = set()
    for conversation_id in {row.conversation_id for row in rows}:
        turns = connection.execute(
            select(
                messages.c.pk, messages.c.parent_pk, messages.c.message_id, messages.c.version
            ).where(*_of(messages, owner), messages.c.conversation_id == conversation_id)
        ).all()
        names |= {turn.pk: (turn.message_id, turn.version) for turn in turns}
        by_pk = {turn.pk: turn for turn in turns}
        current |= {turn.pk for turn in _path(by_pk, max(by_pk, default=None))}
    return [
        MessageDetail(
            message_id=row.message_id,
            version=row.version,
            parent=names.get(row.parent_pk) if row.parent_pk is not None else None,
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
            current=row.pk in current,
            cost=row.cost,
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
        # SUM skips NULLs: a day whose lines are not all priced has no cost, not a part of it.
        case(
            (func.count(usage.c.cost_usd) == func.count(), func.sum(usage.c.cost_usd)),
            else_=None,
        ).label("cost_usd"),
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
            "cost_usd": None if row.cost_usd is None else round(float(row.cost_usd), 8),
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
    return interrupt_orphans(
        connection, messages, this_instance=this_instance, expiry=expiry, starting=starting
    )


def interrupt_orphans(
    connection: Connection, table: Table, *, this_instance: str, expiry: timedelta, starting: bool
) -> int:
    """The rows of `table` (messages, evaluations) left `running` by an instance that is
    gone become `interrupted`; when `starting`, so do this instance's own."""
    alive = select(instances.c.id).where(instances.c.heartbeat_at >= now() - expiry)
    expired = table.c.instance.not_in(alive)
    gone = (
        or_(expired, table.c.instance == this_instance)
        if starting
        else and_(expired, table.c.instance != this_instance)
    )
    return int(
        connection.execute(
            update(table)
            .where(table.c.status == "running", gone)
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
