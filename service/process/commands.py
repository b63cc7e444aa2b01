"""The commands besides serving: `llm-fanout migrate` and `llm-fanout keys ...`.

    llm-fanout keys create --user alice --tenant acme --role user --expires 30d
    llm-fanout keys list [--json]
    llm-fanout keys revoke key_3f2a...

`llm-fanout` is the console script the package installs (`make run` puts it in .venv/bin);
`python -m service ...` is the same thing, for an interpreter that has the package.

They use the same DATABASE_URL as the server. `keys create` prints the key once, alone on
the last line of standard output (or, with --json, an object with `key` and `id`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..api.contract.schemas import Key, respond
from ..api.contract.validation import ID_RULE, checked_id
from ..auth.keys import issue_key, parse_duration
from ..errors import InvalidRequest
from ..evaluation.arguments import add_parser as add_eval_parser
from ..principal import DEFAULT_TENANT
from ..settings import SettingsError, load_settings
from ..storage import Database, StorageStartError, prepare_database
from ..storage.keys import list_keys, revoke_key
from ..storage.migrate import current_revision


class CommandError(Exception):
    """One line for the operator; the command exits with 2."""


def _database() -> Database:
    settings = load_settings()
    if not settings.storage_enabled:
        raise CommandError("DATABASE_URL=none: there is no database")
    return prepare_database(settings.database_url.get_secret_value())


def _an_id(value: str) -> str:
    """A user or tenant: the API's id rule, so a key made here can be named over HTTP too."""
    try:
        return checked_id(value, "id")
    except InvalidRequest:
        raise argparse.ArgumentTypeError(ID_RULE) from None


def _parser() -> argparse.ArgumentParser:
    # The documented spelling, whichever way it was started (usage lines and errors name it).
    parser = argparse.ArgumentParser(prog="llm-fanout")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring DATABASE_URL's schema up to date")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="make a key; it is printed once")
    create.add_argument("--user", required=True, type=_an_id)
    create.add_argument("--tenant", default=DEFAULT_TENANT, type=_an_id)
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument(
        "--scope",
        action="append",
        choices=("process", "history", "admin"),
        help="narrow the key (repeat); default: all its role allows",
    )
    create.add_argument("--expires", help="e.g. 30d, 12h; default: never")
    create.add_argument("--name", help="what the key is for, e.g. laptop")
    create.add_argument("--json", action="store_true")
    listing = keys.add_parser("list", help="every key (never the keys themselves)")
    listing.add_argument("--tenant")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    add_eval_parser(commands)
    return parser


def run_command(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "eval":
        # Its own front: no database, the run machinery (loaded only for it).
        from ..evaluation.command import run_eval

        return run_eval(args)
    try:
        database = _database()
    except (SettingsError, StorageStartError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            print(f"database at revision {current_revision(database.engine)}")
            return 0
        return _keys(args, database)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        database.close()


def _keys(args: argparse.Namespace, database: Database) -> int:
    if args.action == "create":
        try:
            expires_in = parse_duration(args.expires) if args.expires else None
            with database.engine.begin() as connection:
                key, record = issue_key(
                    connection,
                    user=args.user,
                    tenant=args.tenant,
                    role=args.role,
                    scopes=frozenset(args.scope or ()),
                    expires_in=expires_in,
                    name=args.name,
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if args.json:
            print(json.dumps({"key": key, **respond(Key.of(record))}))
        else:
            print(f"created {record.id} for {record.user} ({record.tenant}, {record.role})")
            print("keep this key: it is shown only now")
            print(key)
        return 0
    if args.action == "list":
        with database.engine.begin() as connection:
            records = list_keys(connection, tenant=args.tenant)
        rows: list[dict[str, Any]] = [respond(Key.of(record)) for record in records]
        if args.json:
            print(json.dumps({"keys": rows}))
        else:
            for row in rows:
                state = "revoked" if row["revoked_at"] else "active"
                print(
                    f"{row['id']}  {row['prefix']}...  {row['tenant']}/{row['user']}  "
                    f"{row['role']}  {','.join(row['scopes'])}  {state}  {row['name'] or ''}"
                )
        return 0
    with database.engine.begin() as connection:
        found = revoke_key(connection, key_id=args.id, tenant=None)
    if not found:
        raise CommandError(f"no key {args.id}")
    print(f"revoked {args.id}")
    return 0
