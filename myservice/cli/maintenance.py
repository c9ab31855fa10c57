"""``myservice-maintenance INI on|off|status``: turn read-only maintenance mode on or off.

What the mode does to requests, and how soon every process follows, is
``myservice.edge.maintenance``'s story; what it does to the tools, ``myservice.cli.command``'s.
"""

from pyramid.paster import get_appsettings

from myservice.cli.command import console_script, tool_parser
from myservice.data.errors import OperatorError
from myservice.data.models.maintenance import read_mode, switch_mode
from myservice.data.scripts import session_scope
from myservice.edge.maintenance import ReadOnly, mode_name

EPILOG = """\
On: every process of the service refuses writes (503) within myservice.maintenance_check_seconds
and serves reads; myservice-import, myservice-purge and myservice-token create are refused (exit
status 75) unless given --during-maintenance, and so is pshell's tm.commit() unless the shell
sets dbsession.info["during_maintenance"] = True. Alembic migrations, revoking a token and this
command itself work as ever. Turning it on waits for a tool's commit under way."""


@console_script("myservice-maintenance")
def main(argv=None):
    parser = tool_parser(
        "myservice-maintenance",
        "Turn the service's read-only maintenance mode on or off, or show it. "
        "DATABASE_URL overrides the ini's database.",
        EPILOG,
    )
    parser.add_argument("action", choices=("on", "off", "status"))
    args = parser.parse_args(argv)
    settings = get_appsettings(args.ini, name="main")
    with session_scope(settings) as session:  # the switch itself: never refused
        if args.action != "status":
            switch_mode(session, args.action == "on")
        read_only, since = read_mode(session)
    if since is None:
        raise OperatorError("the database has no service_mode row: run alembic upgrade head")
    switch = ReadOnly.from_settings(settings)
    print(f"{mode_name(read_only)} since {since.isoformat(timespec='seconds')}")
    if args.action != "status":
        print(f"every process of the service follows within {switch.check_seconds:g} s")
    if switch.forced:
        print(f"but {args.ini} sets myservice.read_only = true: the service is read-only anyway")
    return 0
