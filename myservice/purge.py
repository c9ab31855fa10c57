"""``myservice-purge INI``: delete the expired idempotency keys of the ini file's database.

``DATABASE_URL`` overrides the ini's ``sqlalchemy.url``, as it does for the app. Safe to run
while the service serves (from cron, say): it deletes in batches, each its own transaction,
and skips keys that a request is claiming.
"""

import argparse

from pyramid.paster import get_appsettings

from .db import make_engine
from .models.idempotency import purge_expired
from .models.meta import utcnow

BATCH = 1000


def main(argv=None):
    parser = argparse.ArgumentParser(prog="myservice-purge", description=__doc__.splitlines()[0])
    parser.add_argument("ini", help="the service's ini file (development.ini, production.ini)")
    args = parser.parse_args(argv)
    engine = make_engine(get_appsettings(args.ini, name="main"))
    purged, now = 0, utcnow()
    try:
        while True:
            with engine.begin() as connection:
                deleted = purge_expired(connection, now, BATCH)
            purged += deleted
            if deleted < BATCH:
                break
    finally:
        engine.dispose()
    print(f"purged {purged} expired idempotency keys")
