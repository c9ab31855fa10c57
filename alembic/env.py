"""Alembic environment: the database of the ini file given with -c (DATABASE_URL overrides it)."""

from logging.config import fileConfig

from alembic import context
from pyramid.paster import get_appsettings

from myservice.data.db import database_url, session_scope
from myservice.data.models import Base

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
    # committed when the migrations succeed, rolled back when one fails.
    with session_scope(get_appsettings(config.config_file_name)) as session:
        _run(session.connection())


def _run(connection):
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
