"""Answers per step of a deliberation: an agent may answer more than once in a run (a
council's review, a debate's rounds), so each answer names its phase and round. Every answer
stored before is its run's first answer: phase `answer`, round 0.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite changes a primary key by copying the table; PostgreSQL alters in place.
    with op.batch_alter_table("agent_answers") as batch:
        batch.add_column(sa.Column("phase", sa.String(32), nullable=False, server_default="answer"))
        batch.add_column(sa.Column("round", sa.Integer, nullable=False, server_default="0"))
        batch.drop_constraint("pk_agent_answers", type_="primary")
        batch.create_primary_key("pk_agent_answers", ["message_pk", "phase", "round", "agent"])


def downgrade() -> None:
    # Only the first answers fit the key without steps.
    op.execute("DELETE FROM agent_answers WHERE phase <> 'answer' OR round <> 0")
    with op.batch_alter_table("agent_answers") as batch:
        batch.drop_constraint("pk_agent_answers", type_="primary")
        batch.create_primary_key("pk_agent_answers", ["message_pk", "agent"])
        batch.drop_column("round")
        batch.drop_column("phase")
