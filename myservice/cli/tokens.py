"""``myservice-token``: create, list, revoke and check the API tokens of an ini file's database.

``create`` prints the new token alone on stdout (``TOKEN=$(myservice-token create ...)``), once
it is stored: it is shown this once, and only its SHA-256 is kept. ``check`` reads a token on
stdin (never on the command line, where ``ps`` would show it) and says whether the service
accepts it; ``make run`` asks it whether ``.dev-token`` still works.
"""

import argparse
import re
import sys
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy.exc import IntegrityError

from myservice.cli.command import INI_HELP, add_maintenance_override, console_script, tool_session
from myservice.data.models.meta import utcnow
from myservice.data.models.token import (
    SCOPES,
    all_tokens,
    create_token,
    find_by_hash,
    revoke_token,
    sha256,
    state,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

DESCRIPTION = "Create, list, revoke and check the API tokens of the service's database."
EPILOG = """\
The database is the ini file's sqlalchemy.url; DATABASE_URL overrides it.
While the service is read-only for maintenance (myservice-maintenance INI on), create refuses
(exit status 75) unless given --during-maintenance; list, check and revoke work as ever: taking
access away never waits.
Exit status: 0; 1 when the name is taken (create) or unknown (revoke), or the token is not
accepted (check); 2 for bad arguments or a database that cannot be used; 75 as above."""


class Outcome(NamedTuple):
    """What a command did: its exit status, and what to say on stdout and on stderr once its
    transaction is committed (a token is never shown, nor a revocation told, unless stored)."""

    status: int
    out: str | None = None
    err: str | None = None


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not a usage message."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def token_name(value):
    if not NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "a name is 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return value


def duration(value):
    match = DURATION.fullmatch(value)
    if match is None:
        raise argparse.ArgumentTypeError("say how long as a number and s, m, h, d or w, e.g. 30d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def parser():
    main = Parser(
        prog="myservice-token",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = main.add_subparsers(dest="command", required=True, parser_class=Parser)
    ini = {"help": INI_HELP}
    create = commands.add_parser("create", help="create a token and print it")
    create.add_argument("ini", **ini)
    create.add_argument("--name", type=token_name, required=True, help="unique, e.g. deploy-bot")
    create.add_argument(
        "--scope", choices=SCOPES, action="append", required=True, help="once per scope"
    )
    create.add_argument("--expires-in", type=duration, metavar="DURATION", help="e.g. 30d, 12h")
    add_maintenance_override(create)
    listing = commands.add_parser("list", help="list the tokens (never their secrets)")
    listing.add_argument("ini", **ini)
    revoke = commands.add_parser("revoke", help="revoke a token: it is refused from now on")
    revoke.add_argument("ini", **ini)
    revoke.add_argument("name")
    check = commands.add_parser(
        "check", help="read a token on stdin; exit 0 if the service accepts it, else 1"
    )
    check.add_argument("ini", **ini)
    return main


@console_script("myservice-token")
def main(argv=None):
    args = parser().parse_args(argv)
    # Only a new token waits for the end of maintenance: the others read, or take access away.
    during_maintenance = args.command != "create" or args.during_maintenance
    with tool_session(args.ini, during_maintenance=during_maintenance) as session:
        outcome = COMMANDS[args.command](session, args)
    if outcome.out is not None:
        print(outcome.out)
    if outcome.err is not None:
        print(f"myservice-token: {outcome.err}", file=sys.stderr)
    return outcome.status


def create(session, args):
    expires_at = None if args.expires_in is None else utcnow() + args.expires_in
    try:
        with session.begin_nested():
            secret = create_token(session, args.name, args.scope, expires_at)
    except IntegrityError:
        return fail(f"a token named {args.name!r} exists already")
    return Outcome(0, out=secret)


def list_tokens(session, args):
    now = utcnow()
    lines = ["name\tscopes\tcreated\tlast used\texpires\tstate"]
    for token in all_tokens(session):
        times = (token.created_at, token.last_used_at, token.expires_at)
        when = [time.isoformat(timespec="seconds") if time else "-" for time in times]
        lines.append("\t".join([token.name, " ".join(token.scopes), *when, state(token, now)]))
    return Outcome(0, out="\n".join(lines))


def revoke(session, args):
    if not revoke_token(session, args.name):
        return fail(f"there is no token named {args.name!r}")
    return Outcome(0, err=f"revoked {args.name}")


def check(session, args):
    token = find_by_hash(session, sha256(sys.stdin.readline().strip()))
    if token is None:
        return fail("the database knows no such token (was it reset?)")
    if (verdict := state(token, utcnow())) != "active":
        return fail(f"the token {token.name!r} is {verdict}")
    return Outcome(0, err=f"the token {token.name!r} is active: {' '.join(token.scopes)}")


def fail(message):
    return Outcome(1, err=f"error: {message}")


COMMANDS = {"create": create, "list": list_tokens, "revoke": revoke, "check": check}
