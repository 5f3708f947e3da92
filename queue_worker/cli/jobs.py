"""The job commands: work, enqueue, stats, list, retry, cancel, run-now, delete, purge, and
pausing and resuming queues."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from queue_worker import admin, browse
from queue_worker.cli.base import (
    EXIT_OK,
    Cli,
    UsageError,
    job_id,
    json_object,
    non_negative,
    positive,
    positive_int,
    print_table,
    purge_state,
    queue_list,
    queue_name,
    state,
)
from queue_worker.connection import owner_id
from queue_worker.consumer import EXIT_NEEDS_REPLACEMENT, Consumer
from queue_worker.controls import Controls
from queue_worker.job import JobState
from queue_worker.store import utcnow
from queue_worker.tasks import ResourceSetup, open_resources
from queue_worker.wakeup import for_consumer
from runtime import metrics_dir

DEFAULT_DRAIN_S = 30.0
log = logging.getLogger("queue_worker")


def add_commands(sub: Any) -> None:
    """Add the job commands to the CLI's subparsers."""

    work = sub.add_parser("work", help="run one consumer in the foreground")
    work.add_argument("--queues", type=queue_list, help="comma-separated queues to consume")
    work.add_argument("--concurrency", type=positive_int, help="job slots (QUEUE_CONCURRENCY)")
    work.add_argument(
        "--drain-timeout", type=non_negative, default=DEFAULT_DRAIN_S, metavar="S",
        help="on SIGINT/SIGTERM, let running jobs finish this long, then release them",
    )  # fmt: skip
    work.set_defaults(command=cmd_work)

    enqueue = sub.add_parser("enqueue", help="add a job and print its id")
    enqueue.add_argument("task", help="registered task name, e.g. user.created")
    enqueue.add_argument("--payload", type=json_object, default={}, help="JSON object")
    enqueue.add_argument(
        "--queue", type=queue_name, help="queue (default: the task's, else QUEUE_DEFAULT_QUEUE)"
    )
    enqueue.add_argument("--priority", type=int, help="higher runs first")
    enqueue.add_argument("--delay", type=non_negative, metavar="S", help="run after S seconds")
    enqueue.add_argument("--max-attempts", type=positive_int)
    enqueue.add_argument("--timeout", type=positive, metavar="S", help="per-attempt timeout")
    enqueue.add_argument("--idempotency-key", help="one job per key, whoever enqueues it")
    enqueue.set_defaults(command=cmd_enqueue)

    stats = sub.add_parser("stats", help="counts per queue and state, oldest due job age")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(command=cmd_stats)

    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--state", type=state, help="|".join(s.value for s in JobState))
    listing.add_argument("--queue")
    listing.add_argument("--limit", type=positive_int, default=20)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(command=cmd_list)

    retry = sub.add_parser("retry", help="send a dead job (or all dead jobs) back to pending")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?", type=job_id, metavar="JOB_ID")
    target.add_argument("--all-dead", action="store_true", help="every dead job")
    retry.add_argument("--queue", help="with --all-dead: only this queue")
    retry.set_defaults(command=cmd_retry)

    cancel = sub.add_parser("cancel", help="cancel a pending job")
    cancel.add_argument("job_id", type=job_id, metavar="JOB_ID")
    cancel.set_defaults(command=cmd_cancel)

    run_now = sub.add_parser("run-now", help="make a job scheduled for later due now")
    run_now.add_argument("job_id", type=job_id, metavar="JOB_ID")
    run_now.set_defaults(command=cmd_run_now)

    delete = sub.add_parser("delete", help="delete a dead job (and free its key)")
    delete.add_argument("job_id", type=job_id, metavar="JOB_ID")
    delete.set_defaults(command=cmd_delete)

    for verb, text in (("pause", "no consumer claims from it until resumed"),
                       ("resume", "consumers claim from it again")):  # fmt: skip
        parser = sub.add_parser(verb, help=f"{verb} a queue: {text}")
        parser.add_argument("queue", type=queue_name)
        parser.set_defaults(command=cmd_pause_resume, verb=verb)

    purge = sub.add_parser("purge", help="delete finished jobs (dry run without --yes)")
    purge.add_argument(
        "--state", type=purge_state, required=True, help="succeeded | cancelled | dead"
    )
    purge.add_argument(
        "--older-than", type=non_negative, default=0.0, metavar="S",
        help="only jobs that finished at least S seconds ago (default: all)",
    )  # fmt: skip
    purge.add_argument("--yes", action="store_true", help="really delete (else only count)")
    purge.set_defaults(command=cmd_purge)


def cmd_work(args: argparse.Namespace, cli: Cli) -> int:
    """Run one consumer until SIGINT/SIGTERM; drain, release what is left, and exit."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    with cli.store("queue_worker.work") as store:
        store.ensure_indexes()
        resources = open_resources(cli.registry, ResourceSetup(env=cli.env, db=store.db))
        queues = args.queues or [cli.settings.default_queue]
        consumer = Consumer(
            store, cli.registry, cli.settings, owner=owner_id(),
            queues=queues, concurrency=args.concurrency or cli.settings.concurrency,
            stop_timeout_s=args.drain_timeout, resources=resources,
            wakeup=for_consumer(store.db, queues, cli.settings), register=True,
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
    print_table(rows, sys.stdout)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, cli: Cli) -> int:
    """Print jobs, newest first."""
    now = utcnow()
    with cli.store() as store:
        flt = browse.JobFilter(state=args.state, queue=args.queue)
        jobs = browse.find_jobs(store, flt, limit=args.limit)
    summaries = [admin.job_summary(job, now) for job in jobs]
    if args.json:
        print(json.dumps(summaries))
        return EXIT_OK
    rows = [["id", "state", "queue", "task", "attempts", "created_at", "last_error"]]
    for s in summaries:
        error = (s["last_error"] or "")[:60]
        attempts = f"{s['attempts']}/{s['max_attempts']}"
        rows.append([s["id"], s["state"], s["queue"], s["task"], attempts, s["created_at"], error])
    print_table(rows, sys.stdout)
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


def cmd_run_now(args: argparse.Namespace, cli: Cli) -> int:
    """Make one pending job that waits for a later time due now."""
    with cli.store() as store:
        job = admin.run_now(store, args.job_id, now=utcnow())
    print(f"{job.id} due now")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, cli: Cli) -> int:
    """Delete one dead job."""
    with cli.store() as store:
        admin.delete_dead(store, args.job_id)
    print(f"{args.job_id} deleted")
    return EXIT_OK


def cmd_pause_resume(args: argparse.Namespace, cli: Cli) -> int:
    """Pause or resume a queue (consumers see it within CONTROLS_EVERY_S)."""
    with cli.store() as store:
        controls = Controls(store.db)
        if args.verb == "pause":
            changed = controls.pause(args.queue, by=f"cli:{owner_id()}", now=utcnow())
        else:
            changed = controls.resume(args.queue)
    print(f"{args.queue} {args.verb}d" if changed else f"{args.queue} was already {args.verb}d")
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
