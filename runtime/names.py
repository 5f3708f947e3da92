"""Names people type: queues and schedules follow one rule, checked in one place.

A name is 1-100 characters of letters, digits, '.', '-' and '_'. It is safe in a MongoDB filter
(no '$' operators, no NUL), in a URL path segment, in a Prometheus label and in a shell, and the
message a refused name gets says exactly that rule. Lists of names ("a,b") are read by
`runtime.env.names`, the one comma-list parser.
"""

from __future__ import annotations

import re

RULE = "1-100 letters, digits, '.', '-' or '_'"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def is_valid(value: object) -> bool:
    """Return True if `value` is a string that follows the rule."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check(value: object, kind: str = "queue") -> str:
    """Return `value` if it follows the rule; else raise ValueError naming the rule."""
    if not is_valid(value):
        raise ValueError(f"{kind} name {value!r}: use {RULE}")
    assert isinstance(value, str)
    return value


def check_all(values: tuple[str, ...], kind: str = "queue") -> tuple[str, ...]:
    """Check every name of a list that must name at least one."""
    if not values:
        raise ValueError(f"must name at least one {kind}")
    return tuple(check(value, kind) for value in values)
