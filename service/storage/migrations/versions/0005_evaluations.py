"""Evaluations the server runs for admins, and the results each has kept (a row per
question asked of a contestant or read by the judge), every row with its owner.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("report", sa.JSON, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("tenant", "owner", "id", name="pk_evaluations"),
    )
    op.create_index(
        "ix_evaluations_owner_created", "evaluations", ["tenant", "owner", "created_at"]
    )
    op.create_index("ix_evaluations_running", "evaluations", ["status", "instance"])
    op.create_table(
        "evaluation_results",
        sa.Column("pk", PK, nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("evaluation_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_evaluation_results"),
        sa.ForeignKeyConstraint(
            ["tenant", "owner", "evaluation_id"],
            ["evaluations.tenant", "evaluations.owner", "evaluations.id"],
            name="fk_evaluation_results_tenant_owner_evaluation_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_evaluation_results_evaluation",
        "evaluation_results",
        ["tenant", "owner", "evaluation_id", "pk"],
    )


def downgrade() -> None:
    op.drop_table("evaluation_results")
    op.drop_table("evaluations")
