"""`python -m api.auth.tokens.keys`: the ES256 keys of the access tokens (signing_keys.py).

    new     print a new API_JWT_SIGNING_KEYS entry, published now: append it to the list; it
            starts signing by itself PUBLISH_S later
    show    read API_JWT_SIGNING_KEYS (and API_ACCESS_TTL_S, API_JWT_LEEWAY_S) and say, per key,
            its kid and whether it is a next, the current or a previous key, and from when a
            previous one may be removed (its last token has expired)

Exit codes: 0 done; 2 bad arguments or an unreadable setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from api.auth.tokens.signing_keys import (
    PUBLISH_S,
    SigningKey,
    new_entry,
    parse_signing_keys,
    signing_key,
)
from api.settings import ApiSettings


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """Run the keys command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m api.auth.tokens.keys", description=__doc__)
    parser.add_argument("command", choices=("new", "show"))
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    now = now or datetime.now(UTC)
    if args.command == "new":
        print(new_entry(now))
        return 0
    try:
        keys = parse_signing_keys(env.get("API_JWT_SIGNING_KEYS", ""))
        lifetime_s = int(env.get("API_ACCESS_TTL_S", ApiSettings.access_ttl_s)) + int(
            env.get("API_JWT_LEEWAY_S", ApiSettings.jwt_leeway_s)
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print("no keys: access tokens are HS256 (add one: python -m api.auth.tokens.keys new)")
    for index, key in enumerate(keys):
        successor = keys[index + 1] if index + 1 < len(keys) else None
        state = describe(key, successor, keys, now, lifetime_s)
        print(f"{key.kid}  published {_at(key.published_at)}  {state}")
    return 0


def describe(
    key: SigningKey,
    successor: SigningKey | None,
    keys: tuple[SigningKey, ...],
    now: datetime,
    lifetime_s: int,
) -> str:
    """Say what `key` is at `now`: next, current or previous (and when it may go)."""
    current = signing_key(keys, now)
    if key is current:
        return "current: signs new access tokens"
    if key.published_at > now:
        return "not yet published"
    if current is None or key.published_at > current.published_at:
        return f"next: signs from {_at(key.published_at + timedelta(seconds=PUBLISH_S))}"
    assert successor is not None  # an older key than the current one has a newer one
    handed_over = successor.published_at + timedelta(seconds=PUBLISH_S)
    removable = handed_over + timedelta(seconds=lifetime_s)
    if removable <= now:
        return "previous: its tokens have expired; remove it"
    return f"previous: verifies its tokens until {_at(removable)}; remove it after that"


def _at(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC"


if __name__ == "__main__":
    sys.exit(main())
