"""``myservice-token``: create, list and revoke the API tokens of an ini file's database.

    myservice-token create INI --name NAME --scope read [--scope write] [--expires-in 30d]
    myservice-token list INI
    myservice-token revoke INI NAME

``create`` prints the new token alone on stdout (``TOKEN=$(myservice-token create ...)``): it
is shown this once, and only its SHA-256 is stored. ``DATABASE_URL`` overrides the ini's
``sqlalchemy.url``, as it does for the app. Bad arguments: one line on stderr, exit status 2;
a name that is taken or unknown: one line, exit status 1.
"""

import argparse
import re
import sys
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from myservice.data.db import session_scope
from myservice.data.models.meta import utcnow
from myservice.data.models.token import SCOPES, all_tokens, create_token, revoke_token

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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
    main = Parser(prog="myservice-token", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True, parser_class=Parser)
    create = commands.add_parser("create", help="create a token and print it")
    create.add_argument("ini", help="the service's ini file (development.ini, production.ini)")
    create.add_argument("--name", type=token_name, required=True)
    create.add_argument("--scope", choices=SCOPES, action="append", required=True)
    create.add_argument("--expires-in", type=duration, metavar="DURATION", help="e.g. 30d, 12h")
    listing = commands.add_parser("list", help="list the tokens (never their secrets)")
    listing.add_argument("ini")
    revoke = commands.add_parser("revoke", help="revoke a token: it is refused from now on")
    revoke.add_argument("ini")
    revoke.add_argument("name")
    return main


def main(argv=None):
    args = parser().parse_args(argv)
    with session_scope(args.ini) as session:
        return COMMANDS[args.command](session, args)


def create(session, args):
    expires_at = None if args.expires_in is None else utcnow() + args.expires_in
    try:
        with session.begin_nested():
            secret = create_token(session, args.name, args.scope, expires_at)
    except IntegrityError:
        return fail(f"a token named {args.name!r} exists already")
    print(secret)
    return 0


def list_tokens(session, args):
    now = utcnow()
    print("name\tscopes\tcreated\tlast used\texpires\tstate")
    for token in all_tokens(session):
        if token.revoked:
            state = "revoked"
        elif token.expires_at is not None and token.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        times = (token.created_at, token.last_used_at, token.expires_at)
        when = [time.isoformat(timespec="seconds") if time else "-" for time in times]
        print("\t".join([token.name, " ".join(token.scopes), *when, state]))
    return 0


def revoke(session, args):
    if not revoke_token(session, args.name):
        return fail(f"there is no token named {args.name!r}")
    print(f"revoked {args.name}", file=sys.stderr)
    return 0


def fail(message):
    print(f"myservice-token: error: {message}", file=sys.stderr)
    return 1


COMMANDS = {"create": create, "list": list_tokens, "revoke": revoke}
