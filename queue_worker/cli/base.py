"""What every command shares: the context (settings, task registry, environment), exit codes,
table printing and the argument types (argparse turns their errors into exit code 2)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from queue_worker import admin
from queue_worker.connection import connect, database
from queue_worker.job import JobState, parse_job_id
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry
from runtime import env as envspec
from runtime import names

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments: reported with exit code 2 before anything is written."""


@dataclass(frozen=True)
class Cli:
    """What every command gets: the settings, the task registry and the environment."""

    settings: QueueSettings
    registry: TaskRegistry
    env: Mapping[str, str]

    @contextmanager
    def store(self, app_name: str = "queue_worker.cli") -> Iterator[JobStore]:
        """Yield a JobStore on a fresh client, closed afterwards."""
        client = connect(self.settings, app_name=app_name)
        try:
            yield JobStore(database(client, self.settings), self.settings, registry=self.registry)
        finally:
            client.close()


def print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# -- argument types (argparse turns their ValueError/ArgumentTypeError into exit code 2) --------


def json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("the payload must be a JSON object")
    return value


def job_id(raw: str) -> str:
    if parse_job_id(raw) is None or len(raw) != 24:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a job id (24 hex characters)")
    return raw


def state(raw: str) -> JobState:
    try:
        return JobState(raw)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise argparse.ArgumentTypeError(f"unknown state {raw!r} (one of {names})") from None


def purge_state(raw: str) -> JobState:
    value = state(raw)
    if value not in admin.PURGEABLE_STATES:
        raise argparse.ArgumentTypeError(
            f"refusing to purge {value.value} jobs: only succeeded, cancelled or dead jobs "
            "can be purged (cancel pending jobs first)"
        )
    return value


def queue_list(raw: str) -> list[str]:
    try:
        return list(names.check_all(envspec.names(raw)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def queue_name(raw: str) -> str:
    try:
        return names.check(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} must be >= 1")
    return value


def positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw} must be > 0")
    return value


def non_negative(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{raw} must be >= 0")
    return value
