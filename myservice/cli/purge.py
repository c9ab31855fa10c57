"""``myservice-purge INI``: delete the expired idempotency keys of the ini file's database.

``DATABASE_URL`` overrides the ini's ``sqlalchemy.url``, as it does for the app. Safe to run
while the service serves (from cron, say): it deletes in batches, each its own transaction,
and skips keys that a request is claiming.
"""

import argparse

from myservice.data.db import opened_engine, session_scope
from myservice.data.models.idempotency import purge_expired
from myservice.data.models.meta import utcnow

BATCH = 1000


def main(argv=None):
    parser = argparse.ArgumentParser(prog="myservice-purge", description=__doc__.splitlines()[0])
    parser.add_argument("ini", help="the service's ini file (development.ini, production.ini)")
    args = parser.parse_args(argv)
    purged, now = 0, utcnow()
    with opened_engine(args.ini) as engine:
        while True:
            with session_scope(engine) as session:
                deleted = purge_expired(session, now, BATCH)
            purged += deleted
            if deleted < BATCH:
                break
    print(f"purged {purged} expired idempotency keys")
