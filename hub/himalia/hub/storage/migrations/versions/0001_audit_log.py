"""audit log

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "himalia_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_himalia_audit_log")),
    )
    op.create_index(op.f("ix_himalia_audit_log_at"), "himalia_audit_log", ["at"])
    op.create_index(op.f("ix_himalia_audit_log_actor"), "himalia_audit_log", ["actor"])


def downgrade() -> None:
    op.drop_index(op.f("ix_himalia_audit_log_actor"), table_name="himalia_audit_log")
    op.drop_index(op.f("ix_himalia_audit_log_at"), table_name="himalia_audit_log")
    op.drop_table("himalia_audit_log")
