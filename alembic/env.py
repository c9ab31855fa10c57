"""Alembic environment: the database of the ini file given with -c (DATABASE_URL overrides it).

``upgrade`` and ``downgrade`` end by saying where they left the database (alembic's own log
lines are the ini file's to show, and production.ini shows none); a database that cannot be
used, or no database named, is alembic's one-line ``FAILED: ...``, not a traceback.
"""

from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from pyramid.paster import get_appsettings

from myservice.data.engine import database_url
from myservice.data.errors import OperatorError
from myservice.data.models import Base
from myservice.data.scripts import session_scope

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations_offline():
    settings = get_appsettings(config.config_file_name)
    context.configure(
        url=database_url(settings).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by a caller that owns the connection
        _run(connection)
        return
    # The session outside a request, as every tool opens it: the app's engine and BEGIN policy,
    # committed when the migrations succeed, rolled back when one fails. Migrations run in
    # maintenance mode too: that is what it is for.
    try:
        with session_scope(get_appsettings(config.config_file_name)) as session:
            before, after = _run(session.connection())
    except OperatorError as error:
        raise CommandError(str(error)) from None
    say_where(before, after)  # once committed


def _run(connection):
    """Run the migrations on ``connection``; the revisions it was at before, and after."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    before = context.get_context().get_current_heads()
    with context.begin_transaction():
        context.run_migrations()
    return before, context.get_context().get_current_heads()


def say_where(before, after):
    """After ``alembic upgrade`` or ``downgrade``: one line on what it did, even if nothing."""
    command = getattr(getattr(config.cmd_opts, "cmd", (None,))[0], "__name__", None)
    if command not in ("upgrade", "downgrade"):
        return
    was, now = (", ".join(revisions) or "base" for revisions in (before, after))
    latest = " (head)" if set(after) == set(context.script.get_heads()) else ""
    if before == after:
        print(f"the database is at {now}{latest}: nothing to {command}")
    else:
        print(f"{command}d the database from {was} to {now}{latest}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
