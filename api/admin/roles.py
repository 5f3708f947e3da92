"""Who may do what in the dashboard: a role on the user account.

    viewer    every page, read only
    operator  retry, cancel, run now, pause and resume queues and schedules, trigger a schedule
    admin     bulk actions (retry or delete everything a filter matches), delete, role changes

Roles are granted with the CLI (`python -m api.admin grant EMAIL ROLE`), which needs database
access: no HTTP route can make the first admin. Accounts without a role cannot sign in to the
dashboard at all.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Role(IntEnum):
    """A dashboard role; a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: viewer, operator or admin") from None


def role_of(user: dict[str, Any]) -> Role | None:
    """Return the dashboard role of a user document, None if it has none."""
    raw = user.get("role")
    if not isinstance(raw, str):
        return None
    try:
        return Role.parse(raw)
    except ValueError:
        return None
