"""`python -m api.admin`: dashboard roles, from a shell with database access.

    grant EMAIL ROLE     viewer, operator or admin
    revoke EMAIL
    list

A grant needs an address its owner verified. Every change is written to the dashboard's audit
log as done by `cli:<the shell user>`. Exit codes: 0 done; 1 no such account or an unverified
address; 2 bad arguments. Reads MONGODB_URI / MONGODB_DATABASE.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from api.admin.audit import AuditLog
from api.admin.roles import Role
from api.auth.addresses import lookup_key
from api.auth.stores.users import RoleChange, UserStore
from queue_worker.connection import connect, database
from queue_worker.settings import QueueSettings


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    grant = sub.add_parser("grant", help="give an account a dashboard role")
    grant.add_argument("email")
    grant.add_argument("role", type=Role.parse, help="viewer, operator or admin")
    revoke = sub.add_parser("revoke", help="take an account's dashboard role away")
    revoke.add_argument("email")
    sub.add_parser("list", help="accounts with a role")
    args = parser.parse_args(argv)
    settings = QueueSettings.from_env(os.environ if env is None else env)
    client = connect(settings, app_name="api.admin")
    try:
        users = UserStore(database(client, settings))
        if args.command == "list":
            for user in users.with_roles():
                print(f"{user['email']}\t{user['role']}")
            return 0
        role = args.role.label if args.command == "grant" else None
        email = lookup_key(args.email)
        outcome = users.set_role(email, role)
        if outcome is not RoleChange.DONE:
            print(f"error: {outcome.message(args.email)}", file=sys.stderr)
            return 1
        AuditLog(users.db).record(
            at=datetime.now(UTC), email=f"cli:{getpass.getuser()}", action="user.role",
            target=f"{email} → {role or 'none'}",
        )  # fmt: skip
        print(f"{args.email}: {role or 'no role'}")
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
