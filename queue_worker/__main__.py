"""The queue's command line: `python -m queue_worker COMMAND`.

    work      run one consumer in the foreground until SIGINT/SIGTERM, then drain
    enqueue   add a job; prints its id
    stats     job counts per queue and state, and the age of the oldest due job
    list      jobs, newest first, by state and/or queue
    retry     send a dead job (or every dead job) back to pending
    cancel    cancel a pending job
    purge     delete finished jobs (succeeded, cancelled or dead), optionally only old ones

Exit codes: 0 done; 1 the command could not be carried out (unknown job, wrong state, database
unreachable); 2 bad arguments or configuration (nothing was written); 3 the consumer stopped
because handler threads overran their timeout and the process should be replaced.

Settings come from the environment (QueueSettings.from_env): this is an entry point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

from pymongo.errors import PyMongoError

from queue_worker import admin
from queue_worker.builtin import load_tasks
from queue_worker.connection import connect, database, owner_id
from queue_worker.consumer import EXIT_NEEDS_REPLACEMENT, Consumer
from queue_worker.errors import (
    ConfigError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    UnknownTaskError,
)
from queue_worker.job import JobState, parse_job_id
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore, utcnow
from queue_worker.tasks import ResourceSetup, TaskRegistry, open_resources
from runtime import metrics_dir

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_DRAIN_S = 30.0

log = logging.getLogger("queue_worker")


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


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one CLI command and return its exit code."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = QueueSettings.from_env(env)
        registry = load_tasks(settings)
    except ConfigError as exc:
        return _error(f"configuration: {exc}", EXIT_USAGE)
    metrics_dir.ensure(env)
    command: Callable[[argparse.Namespace, Cli], int] = args.command
    try:
        return command(args, Cli(settings, registry, env))
    except ConfigError as exc:
        return _error(f"configuration: {exc}", EXIT_USAGE)
    except (UsageError, UnknownTaskError, InvalidJobError, admin.RefusedError) as exc:
        return _error(str(exc), EXIT_USAGE)
    except (JobNotFoundError, InvalidTransitionError) as exc:
        return _error(str(exc), EXIT_FAILED)
    except PyMongoError as exc:
        return _error(f"database: {type(exc).__name__}: {exc}", EXIT_FAILED)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command (argparse exits with code 2 on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m queue_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    work = sub.add_parser("work", help="run one consumer in the foreground")
    work.add_argument("--queues", type=_queue_list, help="comma-separated queues to consume")
    work.add_argument("--concurrency", type=_positive_int, help="job slots (QUEUE_CONCURRENCY)")
    work.add_argument(
        "--drain-timeout", type=_non_negative, default=DEFAULT_DRAIN_S, metavar="S",
        help="on SIGINT/SIGTERM, let running jobs finish this long, then release them",
    )  # fmt: skip
    work.set_defaults(command=cmd_work)

    enqueue = sub.add_parser("enqueue", help="add a job and print its id")
    enqueue.add_argument("task", help="registered task name, e.g. user.created")
    enqueue.add_argument("--payload", type=_json_object, default={}, help="JSON object")
    enqueue.add_argument("--queue", help="queue (default: the task's, else QUEUE_DEFAULT_QUEUE)")
    enqueue.add_argument("--priority", type=int, help="higher runs first")
    enqueue.add_argument("--delay", type=_non_negative, metavar="S", help="run after S seconds")
    enqueue.add_argument("--max-attempts", type=_positive_int)
    enqueue.add_argument("--timeout", type=_positive, metavar="S", help="per-attempt timeout")
    enqueue.add_argument("--idempotency-key", help="one job per key, whoever enqueues it")
    enqueue.set_defaults(command=cmd_enqueue)

    stats = sub.add_parser("stats", help="counts per queue and state, oldest due job age")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(command=cmd_stats)

    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--state", type=_state, help="|".join(s.value for s in JobState))
    listing.add_argument("--queue")
    listing.add_argument("--limit", type=_positive_int, default=20)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(command=cmd_list)

    retry = sub.add_parser("retry", help="send a dead job (or all dead jobs) back to pending")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?", type=_job_id, metavar="JOB_ID")
    target.add_argument("--all-dead", action="store_true", help="every dead job")
    retry.add_argument("--queue", help="with --all-dead: only this queue")
    retry.set_defaults(command=cmd_retry)

    cancel = sub.add_parser("cancel", help="cancel a pending job")
    cancel.add_argument("job_id", type=_job_id, metavar="JOB_ID")
    cancel.set_defaults(command=cmd_cancel)

    purge = sub.add_parser("purge", help="delete finished jobs (dry run without --yes)")
    purge.add_argument(
        "--state", type=_purge_state, required=True, help="succeeded | cancelled | dead"
    )
    purge.add_argument(
        "--older-than", type=_non_negative, default=0.0, metavar="S",
        help="only jobs that finished at least S seconds ago (default: all)",
    )  # fmt: skip
    purge.add_argument("--yes", action="store_true", help="really delete (else only count)")
    purge.set_defaults(command=cmd_purge)
    return parser


# -- commands ----------------------------------------------------------------------------------


def cmd_work(args: argparse.Namespace, cli: Cli) -> int:
    """Run one consumer until SIGINT/SIGTERM; drain, release what is left, and exit."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    with cli.store("queue_worker.work") as store:
        store.ensure_indexes()
        resources = open_resources(cli.registry, ResourceSetup(env=cli.env, db=store.db))
        consumer = Consumer(
            store, cli.registry, cli.settings, owner=owner_id(),
            queues=args.queues, concurrency=args.concurrency or cli.settings.concurrency,
            stop_timeout_s=args.drain_timeout, resources=resources,
        )  # fmt: skip
        signalled: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signalled.append(signum)  # record only; the loop acts on it
            consumer.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(
            "consumer %s: queues=%s concurrency=%d tasks=%s",
            consumer.owner, ",".join(consumer.queues), consumer.concurrency,
            ",".join(cli.registry.names()),
        )  # fmt: skip
        consumer.run()
        log.info("consumer %s stopped after %d jobs", consumer.owner, consumer.jobs_finished)
    metrics_dir.process_died(os.getpid())
    if not signalled and consumer.needs_replacement:
        return EXIT_NEEDS_REPLACEMENT
    return EXIT_OK


def cmd_enqueue(args: argparse.Namespace, cli: Cli) -> int:
    """Enqueue one job and print its id."""
    cli.registry.get(args.task)  # unknown task: a usage error, before touching the database
    with cli.store() as store:
        # Idempotency keys rest on a unique index: never enqueue before it exists.
        store.ensure_indexes()
        job = store.enqueue(
            args.task, args.payload, queue=args.queue, priority=args.priority,
            delay_s=args.delay, max_attempts=args.max_attempts, timeout_s=args.timeout,
            idempotency_key=args.idempotency_key, submitted_by="cli",
        )  # fmt: skip
    print(job.id)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, cli: Cli) -> int:
    """Print job counts per queue and state and the oldest due job's age."""
    now = utcnow()
    with cli.store() as store:
        result = admin.stats(store, now).as_dict()
    if args.json:
        print(json.dumps({"now": now.isoformat(), **result}, sort_keys=True))
        return EXIT_OK
    states = [s.value for s in JobState]
    rows = [["queue", *states, "oldest_due_s"]]
    for queue, info in result["queues"].items():
        age = info["oldest_due_age_s"]
        rows.append(
            [queue, *(str(info["counts"][s]) for s in states), "-" if age is None else f"{age:.1f}"]
        )
    _print_table(rows, sys.stdout)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, cli: Cli) -> int:
    """Print jobs, newest first."""
    now = utcnow()
    with cli.store() as store:
        jobs = admin.list_jobs(store, state=args.state, queue=args.queue, limit=args.limit)
    summaries = [admin.job_summary(job, now) for job in jobs]
    if args.json:
        print(json.dumps(summaries))
        return EXIT_OK
    rows = [["id", "state", "queue", "task", "attempts", "created_at", "last_error"]]
    for s in summaries:
        error = (s["last_error"] or "")[:60]
        attempts = f"{s['attempts']}/{s['max_attempts']}"
        rows.append([s["id"], s["state"], s["queue"], s["task"], attempts, s["created_at"], error])
    _print_table(rows, sys.stdout)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, cli: Cli) -> int:
    """Revive one dead job, or all of them."""
    if args.queue and not args.all_dead:
        raise UsageError("--queue only applies with --all-dead")
    with cli.store() as store:
        if args.all_dead:
            print(f"revived {admin.retry_all_dead(store, queue=args.queue)} dead jobs")
        else:
            job = admin.retry(store, args.job_id)
            print(f"{job.id} pending")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, cli: Cli) -> int:
    """Cancel one pending job."""
    with cli.store() as store:
        job = admin.cancel(store, args.job_id)
    print(f"{job.id} cancelled")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace, cli: Cli) -> int:
    """Delete (or, without --yes, count) finished jobs of one state."""
    state: JobState = args.state
    with cli.store() as store:
        count = admin.purge(
            store, state, now=utcnow(), older_than_s=args.older_than, dry_run=not args.yes
        )
    age = f" that finished over {args.older_than:g}s ago" if args.older_than else ""
    if args.yes:
        print(f"deleted {count} {state.value} jobs{age}")
    else:
        print(f"would delete {count} {state.value} jobs{age}; add --yes to delete them")
    return EXIT_OK


# -- plumbing ----------------------------------------------------------------------------------


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# -- argument types (argparse turns their ValueError/ArgumentTypeError into exit code 2) --------


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("the payload must be a JSON object")
    return value


def _job_id(raw: str) -> str:
    if parse_job_id(raw) is None or len(raw) != 24:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a job id (24 hex characters)")
    return raw


def _state(raw: str) -> JobState:
    try:
        return JobState(raw)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise argparse.ArgumentTypeError(f"unknown state {raw!r} (one of {names})") from None


def _purge_state(raw: str) -> JobState:
    state = _state(raw)
    if state not in admin.PURGEABLE_STATES:
        raise argparse.ArgumentTypeError(
            f"refusing to purge {state.value} jobs: only succeeded, cancelled or dead jobs "
            "can be purged (cancel pending jobs first)"
        )
    return state


def _queue_list(raw: str) -> list[str]:
    queues = [q.strip() for q in raw.split(",") if q.strip()]
    if not queues:
        raise argparse.ArgumentTypeError("give at least one queue name")
    return queues


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} must be >= 1")
    return value


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw} must be > 0")
    return value


def _non_negative(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{raw} must be >= 0")
    return value


if __name__ == "__main__":
    sys.exit(main())
