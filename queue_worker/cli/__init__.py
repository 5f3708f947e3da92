"""The queue's command line: `python -m queue_worker COMMAND`.

    work      run one consumer in the foreground until SIGINT/SIGTERM, then drain
    enqueue   add a job; prints its id
    stats     job counts per queue and state, and the age of the oldest due job
    list      jobs, newest first, by state and/or queue
    retry     send a dead job (or every dead job) back to pending
    cancel    cancel a pending job
    purge     delete finished jobs (succeeded, cancelled or dead), optionally only old ones
    schedules periodic jobs: list, pause, resume, trigger, validate (cli/schedules.py)

Exit codes: 0 done; 1 the command could not be carried out (unknown job, wrong state, database
unreachable); 2 bad arguments or configuration (nothing was written); 3 the consumer stopped
because handler threads overran their timeout and the process should be replaced.

Settings come from the environment (QueueSettings.from_env): this is an entry point.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence

from pymongo.errors import PyMongoError

from queue_worker import admin
from queue_worker.builtin import load_tasks
from queue_worker.cli import jobs, schedules
from queue_worker.cli.base import EXIT_FAILED, EXIT_USAGE, Cli, UsageError, error
from queue_worker.errors import (
    ConfigError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    UnknownTaskError,
)
from queue_worker.settings import QueueSettings
from runtime import metrics_dir


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one CLI command and return its exit code."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = QueueSettings.from_env(env)
        registry = load_tasks(settings)
    except ConfigError as exc:
        return error(f"configuration: {exc}", EXIT_USAGE)
    metrics_dir.ensure(env)
    command: Callable[[argparse.Namespace, Cli], int] = args.command
    try:
        return command(args, Cli(settings, registry, env))
    except ConfigError as exc:
        return error(f"configuration: {exc}", EXIT_USAGE)
    except (UsageError, UnknownTaskError, InvalidJobError, admin.RefusedError) as exc:
        return error(str(exc), EXIT_USAGE)
    except (JobNotFoundError, InvalidTransitionError) as exc:
        return error(str(exc), EXIT_FAILED)
    except PyMongoError as exc:
        return error(f"database: {type(exc).__name__}: {exc}", EXIT_FAILED)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command (argparse exits with code 2 on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m queue_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    jobs.add_commands(sub)
    schedules.add_commands(sub)
    return parser
