"""Message versions: a message id names the newest message sent under it. Each message gets
its version (1, 2, ... per owner and id) and its parent (the turn it follows in its
conversation), so an edit or a regenerated answer branches the conversation from there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    # batch: SQLite changes a constraint by copying the table; PostgreSQL alters in place.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("parent_pk", PK, nullable=True))
        batch.drop_constraint("uq_messages_tenant_owner_message_id", type_="unique")
        batch.create_unique_constraint(
            "uq_messages_tenant_owner_message_id_version",
            ["tenant", "owner", "message_id", "version"],
        )
    # Every stored turn followed the one before it in its conversation.
    op.execute(
        "UPDATE messages SET parent_pk = (SELECT max(earlier.pk) FROM messages AS earlier "
        "WHERE earlier.tenant = messages.tenant AND earlier.owner = messages.owner "
        "AND earlier.conversation_id = messages.conversation_id AND earlier.pk < messages.pk)"
    )


def downgrade() -> None:
    # Only the newest version of each id can keep it.
    op.execute(
        "DELETE FROM messages WHERE EXISTS (SELECT 1 FROM messages AS newer "
        "WHERE newer.tenant = messages.tenant AND newer.owner = messages.owner "
        "AND newer.message_id = messages.message_id AND newer.version > messages.version)"
    )
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("uq_messages_tenant_owner_message_id_version", type_="unique")
        batch.create_unique_constraint(
            "uq_messages_tenant_owner_message_id", ["tenant", "owner", "message_id"]
        )
        batch.drop_column("parent_pk")
        batch.drop_column("version")
