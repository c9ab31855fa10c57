"""``myservice-purge INI``: delete the expired idempotency keys of the ini file's database.

``DATABASE_URL`` overrides the ini's ``sqlalchemy.url``, as it does for the app. Safe to run
while the service serves (from cron, say): it deletes in batches, each its own transaction,
and skips keys that a request is claiming.
"""

from myservice.cli.command import (
    add_maintenance_override,
    console_script,
    tool_parser,
    tool_session,
)
from myservice.data.models.idempotency import purge_expired
from myservice.data.models.meta import utcnow
from myservice.data.scripts import opened_engine

BATCH = 1000

DESCRIPTION = "Delete the expired idempotency keys of the service's database."
EPILOG = """\
The database is the ini file's sqlalchemy.url; DATABASE_URL overrides it. Safe to run while
the service serves (from cron, say): it deletes in batches of 1000, each its own transaction.
While the service is read-only for maintenance (myservice-maintenance INI on) it deletes
nothing and exits with status 75, unless given --during-maintenance.
Exit status: 0; 2 for bad arguments or a database that cannot be used; 75 as above."""


@console_script("myservice-purge")
def main(argv=None):
    parser = tool_parser("myservice-purge", DESCRIPTION, EPILOG)
    add_maintenance_override(parser)
    args = parser.parse_args(argv)
    purged, now = 0, utcnow()
    with opened_engine(args.ini) as engine:
        while True:
            with tool_session(engine, during_maintenance=args.during_maintenance) as session:
                deleted = purge_expired(session, now, BATCH)
            purged += deleted
            if deleted < BATCH:
                break
    print(f"purged {purged} expired idempotency keys")
    return 0
