"""tokens: NOTIFY myservice_tokens on every change but a use noted

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Each process remembers the tokens it has read and forgets them all when it hears this
notification (myservice/edge/tokencache.py). One notification per statement, sent at its commit;
``last_used_at`` alone is left out, or every process would forget its tokens whenever one of
them noted a use. PostgreSQL only: SQLite has no notifications, and there each process
believes a token for a second at most.
"""

from alembic import op


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANGED_COLUMNS = "id, name, secret_sha256, scopes, created_at, expires_at, revoked"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION notify_api_tokens_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('myservice_tokens', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER api_tokens_changed
        AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF {CHANGED_COLUMNS} ON api_tokens
        FOR EACH STATEMENT EXECUTE FUNCTION notify_api_tokens_changed()
        """
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER api_tokens_changed ON api_tokens")
    op.execute("DROP FUNCTION notify_api_tokens_changed()")
