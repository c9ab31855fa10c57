"""``myservice-maintenance INI on|off|status``: turn read-only maintenance mode on or off.

What the mode does to requests, and how soon every process follows, is
``myservice.edge.maintenance``'s story.
"""

import argparse
import sys

from pyramid.paster import get_appsettings
from sqlalchemy.exc import DBAPIError

from myservice.data.db import session_scope
from myservice.data.models.maintenance import read_mode, switch_mode
from myservice.edge.maintenance import ReadOnly, mode_name


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="myservice-maintenance",
        description="Turn the service's read-only maintenance mode on or off, or show it. "
        "DATABASE_URL overrides the ini's database.",
    )
    parser.add_argument("ini", help="the service's ini file (development.ini, production.ini)")
    parser.add_argument("action", choices=("on", "off", "status"))
    args = parser.parse_args(argv)
    settings = get_appsettings(args.ini, name="main")
    try:
        with session_scope(settings) as session:
            if args.action != "status":
                switch_mode(session, args.action == "on")
            read_only, since = read_mode(session)
    except DBAPIError as error:
        sys.exit(f"myservice-maintenance: the database failed: {error.orig}")
    if since is None:
        sys.exit("myservice-maintenance: no service_mode row: run alembic upgrade head")
    switch = ReadOnly.from_settings(settings)
    print(f"{mode_name(read_only)} since {since.isoformat(timespec='seconds')}")
    if args.action != "status":
        print(f"every process of the service follows within {switch.check_seconds:g} s")
    if switch.forced:
        print(f"but {args.ini} sets myservice.read_only = true: the service is read-only anyway")
