"""The tables, declared once; Alembic's migrations are written against this metadata.

Every row has an owner, and every key that a client names (a conversation id, a message id)
is unique per owner only, so one owner's ids say nothing about another's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Constraint names the same on SQLite and PostgreSQL, so migrations can name them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TENANT = 128
OWNER = 128  # a user id
CLIENT_ID = 128  # ids a client chooses (conversation_id, message_id), as the API allows


class ModelText(TypeDecorator[str]):
    """What a model wrote (an answer, a summary). A client's text with a NUL is refused at
    the edge, but a model may write one, and PostgreSQL refuses NUL in text (SQLite keeps
    it): kept as U+FFFD on both, so the message is stored the same on either. The stored
    stream keeps the NUL itself (its events are JSON, where it is `\\u0000`)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "\ufffd") if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return value if value is None else str(value)


conversations = Table(
    "conversations",
    metadata,
    Column("tenant", String(TENANT), primary_key=True),
    Column("owner", String(OWNER), primary_key=True),
    Column("id", String(CLIENT_ID), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_conversations_owner_updated", "tenant", "owner", "updated_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("tenant", String(TENANT), nullable=False),
    Column("owner", String(OWNER), nullable=False),
    Column("message_id", String(CLIENT_ID), nullable=False),
    Column("conversation_id", String(CLIENT_ID), nullable=False),
    Column("question", Text, nullable=False),
    # running, completed, failed, cancelled, interrupted
    Column("status", String(16), nullable=False),
    Column("summary", ModelText, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("ensemble", String(CLIENT_ID), nullable=True),
    Column("ensemble_version", String(64), nullable=True),
    Column("models", JSON, nullable=True),
    Column("usage", JSON, nullable=True),
    Column("timings", JSON, nullable=True),
    # What its calls cost in US dollars, as `done` said: total_usd, members.
    Column("cost", JSON, nullable=True),
    Column("trace_id", String(32), nullable=True),
    # The instance that runs it: its rows turn `interrupted` when its heartbeat stops.
    Column("instance", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # A message id names the newest of its versions: a message sent again under it with
    # other text, an edit or a regenerated answer is a new row with the next version.
    Column("version", Integer, nullable=False, server_default="1"),
    # The turn this one follows in its conversation (None: the first). An edit or a
    # regenerated answer has the parent of the turn it replaces: a branch from there.
    Column("parent_pk", BigInteger().with_variant(Integer, "sqlite"), nullable=True),
    UniqueConstraint("tenant", "owner", "message_id", "version"),
    ForeignKeyConstraint(
        ["tenant", "owner", "conversation_id"],
        ["conversations.tenant", "conversations.owner", "conversations.id"],
        ondelete="CASCADE",
    ),
    Index("ix_messages_conversation", "tenant", "owner", "conversation_id", "pk"),
    Index("ix_messages_running", "status", "instance"),
    Index("ix_messages_created", "created_at"),
)

agent_answers = Table(
    "agent_answers",
    metadata,
    Column("message_pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # The step of the run's deliberation the answer belongs to (pipeline/strategies.py).
    Column("phase", String(32), primary_key=True, server_default="answer"),
    Column("round", Integer, primary_key=True, server_default="0"),
    Column("agent", String(CLIENT_ID), primary_key=True),
    Column("model", String(200), nullable=True),
    # completed, failed, cut
    Column("outcome", String(16), nullable=False),
    Column("text", ModelText, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    # The answering call's US dollars (None: not known).
    Column("cost_usd", Float, nullable=True),
    ForeignKeyConstraint(["message_pk"], ["messages.pk"], ondelete="CASCADE"),
)

# A message's events, a row per write (a phase of the run), not per event: a summary's
# tokens are hundreds of events, and a row each was most of what storage cost a stream.
message_events = Table(
    "message_events",
    metadata,
    Column("message_pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # The id of the row's last event; its events are those after the row before.
    Column("last_event_id", Integer, primary_key=True, autoincrement=False),
    # A JSON list of [id, type, data], data being the event's JSON exactly as it was sent,
    # so a replay is byte for byte the same.
    Column("events", Text, nullable=False),
    ForeignKeyConstraint(["message_pk"], ["messages.pk"], ondelete="CASCADE"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    # What a person recognises the key by (its first characters); the key itself is never kept.
    Column("prefix", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("tenant", String(TENANT), nullable=False),
    Column("user", String(OWNER), nullable=False),
    Column("role", String(16), nullable=False),
    # Space-separated: process, history, admin.
    Column("scopes", String(64), nullable=False),
    Column("name", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Index("ix_api_keys_tenant_user", "tenant", "user"),
)

# Tokens used, added up per tenant, user, key, model and day; failed and cut calls count too
# where the provider reported their tokens.
usage = Table(
    "usage",
    metadata,
    Column("tenant", String(TENANT), primary_key=True),
    Column("user", String(OWNER), primary_key=True),
    # "" for a caller without a key (a JWT, or AUTH=none).
    Column("key_id", String(32), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("calls", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    # US dollars, priced when each run ended; NULL once one of the line's calls had no known
    # price (NULL + x is NULL: a sum that would be wrong is never shown).
    Column("cost_usd", Float, nullable=True),
)

# Evaluations the server runs for an admin (`POST /admin/evals`), and what each has kept:
# a row per question asked of a contestant (`result`) or read by its judge (`verdict`), so an
# interrupted one goes on from there.
evaluations = Table(
    "evaluations",
    metadata,
    Column("tenant", String(TENANT), primary_key=True),
    Column("owner", String(OWNER), primary_key=True),
    Column("id", String(CLIENT_ID), primary_key=True),
    # running, completed, failed, cancelled, interrupted
    Column("status", String(16), nullable=False),
    # A data set shipped with the server, by name, or "upload".
    Column("dataset", String(CLIENT_ID), nullable=False),
    # What was asked (ensembles, scorer, tolerance, concurrency, budget, seed, judge) and the
    # questions themselves, so a resume asks the same of the same.
    Column("spec", JSON, nullable=False),
    Column("items", JSON, nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("spent_usd", Float, nullable=False, server_default="0"),
    Column("report", JSON, nullable=True),
    Column("error_code", String(64), nullable=True),
    # The instance that runs it: it turns `interrupted` when its heartbeat stops.
    Column("instance", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_evaluations_owner_created", "tenant", "owner", "created_at"),
    Index("ix_evaluations_running", "status", "instance"),
)

evaluation_results = Table(
    "evaluation_results",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("tenant", String(TENANT), nullable=False),
    Column("owner", String(OWNER), nullable=False),
    Column("evaluation_id", String(CLIENT_ID), nullable=False),
    # result or verdict
    Column("kind", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    ForeignKeyConstraint(
        ["tenant", "owner", "evaluation_id"],
        ["evaluations.tenant", "evaluations.owner", "evaluations.id"],
        ondelete="CASCADE",
    ),
    Index("ix_evaluation_results_evaluation", "tenant", "owner", "evaluation_id", "pk"),
)
