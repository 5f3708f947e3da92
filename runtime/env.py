"""Settings from the environment: a table of `Option`s per settings class, one parser, one error.

Each package describes its variables once, as a tuple of `Option(env, field, parse)`, next to the
frozen dataclass they fill (`api.settings`, `queue_worker.settings`, `supervisor.settings`);
defaults live on the dataclass. `read(options, env)` returns the fields whose variables are set,
already parsed, and raises `SettingsError` naming the variable (or flag) and the reason. Entry
points are the only callers that pass the real environment; everything else receives settings.

The tables are also what the documentation is checked against: every variable the code reads is
an `Option` in one of the tables, so a test can compare them with the configuration reference
and deploy/env.example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is unusable; the message names the variable (or flag) and the reason."""


@dataclass(frozen=True)
class Option(Generic[T]):
    """One environment variable: the settings field it fills and how its text is parsed.

    `parse` raises ValueError with a short reason ("must be at least 1"); `read` adds the
    variable's name. `flag` is the command-line spelling where an entry point has one; an
    option with no `env` ("") is a flag only.
    """

    env: str
    field: str
    parse: Callable[[str], T]
    help: str = ""
    flag: str | None = None
    secret: bool = False  # never echo the value in an error message


def read(
    options: Iterable[Option[Any]],
    env: Mapping[str, str],
    flags: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Return {field: parsed value} for every option set by flag (first) or environment.

    Unset and blank values are left out, so the dataclass default applies."""
    values: dict[str, Any] = {}
    for option in options:
        raw: str | None
        flag_value = (flags or {}).get(option.field)
        if flag_value is not None:
            raw, source = flag_value, option.flag or option.field
        elif option.env:
            raw, source = env.get(option.env), option.env
        else:
            continue
        if raw is None or raw.strip() == "":
            continue
        try:
            values[option.field] = option.parse(raw.strip())
        except ValueError as exc:
            shown = source if option.secret else f"{source}={raw!r}"
            raise SettingsError(f"{shown} {exc}" if option.secret else f"{shown}: {exc}") from None
    return values


def variables(options: Iterable[Option[Any]]) -> list[str]:
    """Return the environment variable names of a table, in order."""
    return [option.env for option in options if option.env]


# -- parsers: each takes the stripped text and raises ValueError with the reason -------------


def integer(low: int = -(2**63), high: int = 2**63 - 1) -> Callable[[str], int]:
    """Parse a whole number in [low, high]."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
        _check_range(value, low, high)
        return value

    return parse


def number(
    low: float = -math.inf, high: float = math.inf, *, above: bool = False
) -> Callable[[str], float]:
    """Parse a finite number in [low, high] (or (low, high] with `above`)."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if above and not value > low:
            raise ValueError(f"must be greater than {low:g}")
        _check_range(value, low, high)
        return value

    return parse


def flag(raw: str) -> bool:
    """Parse 1/0, true/false, yes/no, on/off."""
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 0 or 1")


def names(raw: str) -> tuple[str, ...]:
    """Parse a comma-separated list of names (blank items dropped); may be empty. The one
    comma-list parser: settings, command-line options and key lists all read lists with it."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def non_empty_names(raw: str) -> tuple[str, ...]:
    """Parse a comma-separated list with at least one name."""
    parsed = names(raw)
    if not parsed:
        raise ValueError("must name at least one")
    return parsed


def text(raw: str) -> str:
    """Take the value as it is (already stripped)."""
    return raw


def port(raw: str) -> int:
    """Parse a TCP port, 0 meaning off."""
    return integer(0, 65535)(raw)


def _check_range(value: float, low: float, high: float) -> None:
    if value < low:
        raise ValueError(f"must be at least {low:g}")
    if value > high:
        raise ValueError(f"must be at most {high:g}")
