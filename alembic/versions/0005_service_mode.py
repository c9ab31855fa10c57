"""the maintenance switch (read-only mode)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # One row: myservice-maintenance turns read_only on and off (see docs/design.md).
    mode = op.create_table(
        "service_mode",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_mode")),
        sa.CheckConstraint("id = 1", name=op.f("ck_service_mode_one_row")),
    )
    op.bulk_insert(mode, [{"id": 1, "read_only": False, "changed_at": datetime.now(UTC)}])


def downgrade():
    op.drop_table("service_mode")
