"""Costs in US dollars where tokens are kept: a message's `cost` (as its `done` event gave
it), each stored answer's `cost_usd`, and the usage ledger's `cost_usd` per line. Rows stored
before have none (NULL): their prices were never asked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding a nullable column needs no copy of the table, on SQLite or PostgreSQL.
    op.add_column("messages", sa.Column("cost", sa.JSON, nullable=True))
    op.add_column("agent_answers", sa.Column("cost_usd", sa.Float, nullable=True))
    op.add_column("usage", sa.Column("cost_usd", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("cost_usd")
    with op.batch_alter_table("agent_answers") as batch:
        batch.drop_column("cost_usd")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("cost")
