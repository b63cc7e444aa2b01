"""Conversations, messages, agent answers, event logs, instance heartbeats, API keys and
the usage ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "owner", "id", name="pk_conversations"),
    )
    op.create_index(
        "ix_conversations_owner_updated",
        "conversations",
        ["tenant", "owner", "updated_at", "id"],
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("heartbeat_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_table(
        "messages",
        sa.Column("pk", PK, primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("ensemble", sa.String(128), nullable=True),
        sa.Column("ensemble_version", sa.String(64), nullable=True),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("usage", sa.JSON, nullable=True),
        sa.Column("timings", sa.JSON, nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_messages"),
        sa.UniqueConstraint(
            "tenant", "owner", "message_id", name="uq_messages_tenant_owner_message_id"
        ),
        sa.ForeignKeyConstraint(
            ["tenant", "owner", "conversation_id"],
            ["conversations.tenant", "conversations.owner", "conversations.id"],
            name="fk_messages_tenant_owner_conversation_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_messages_conversation", "messages", ["tenant", "owner", "conversation_id", "pk"]
    )
    op.create_index("ix_messages_running", "messages", ["status", "instance"])
    op.create_index("ix_messages_created", "messages", ["created_at"])
    op.create_table(
        "agent_answers",
        sa.Column("message_pk", PK, primary_key=True),
        sa.Column("agent", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("message_pk", "agent", name="pk_agent_answers"),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.pk"],
            name="fk_agent_answers_message_pk",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "message_events",
        sa.Column("message_pk", PK, primary_key=True),
        sa.Column("last_event_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("message_pk", "last_event_id", name="pk_message_events"),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.pk"],
            name="fk_message_events_message_pk",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("last_used_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("hash", name="uq_api_keys_hash"),
    )
    op.create_index("ix_api_keys_tenant_user", "api_keys", ["tenant", "user"])
    op.create_table(
        "usage",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("user", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user", "key_id", "model", "day", name="pk_usage"),
    )


def downgrade() -> None:
    op.drop_table("usage")
    op.drop_table("api_keys")
    op.drop_table("message_events")
    op.drop_table("agent_answers")
    op.drop_table("messages")
    op.drop_table("instances")
    op.drop_table("conversations")
