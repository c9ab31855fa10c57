"""groups and memberships

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "groups",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("max_members", sa.Integer, nullable=True),
        sa.Column("member_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        # The database itself refuses a count that is negative or above the limit.
        sa.CheckConstraint("max_members >= 0", name=op.f("ck_groups_max_members_not_negative")),
        sa.CheckConstraint("member_count >= 0", name=op.f("ck_groups_member_count_not_negative")),
        sa.CheckConstraint(
            "max_members IS NULL OR member_count <= max_members",
            name=op.f("ck_groups_member_count_within_max"),
        ),
        sqlite_autoincrement=True,  # SQLite would otherwise reuse a deleted group's id
    )
    # Names are unique whatever their case; ?name= filters use the same expression.
    op.create_index("uq_groups_name_lower", "groups", [sa.text("lower(name)")], unique=True)

    op.create_table(
        "memberships",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        # (group_id, user_id): a user is in a group at most once, and the members of a group
        # are one range of this key.
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_memberships")),
        # A group's memberships go with it. A user's must be removed (and counted) first.
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_memberships_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_memberships_user_id_users"),
            ondelete="RESTRICT",
        ),
    )
    # The groups of a user: one range of this index (and the foreign key's index).
    op.create_index("ix_memberships_user_id_group_id", "memberships", ["user_id", "group_id"])


def downgrade():
    op.drop_index("ix_memberships_user_id_group_id", table_name="memberships")
    op.drop_table("memberships")
    op.drop_index("uq_groups_name_lower", table_name="groups")
    op.drop_table("groups")
