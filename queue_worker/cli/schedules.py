"""`python -m queue_worker schedules ...`: see and steer the periodic jobs.

    list      each schedule: timing, policy, state, next 5 runs (local time and UTC), last runs
              and their jobs' outcomes
    pause     NAME [--until ISO-8601]: its ticks pass without jobs (counted as paused)
    resume    NAME: from the first tick after now (the paused ones are not made up)
    trigger   NAME: one extra run now; no tick is consumed
    validate  the definitions in the code: unknown tasks, expressions that never fire or fire
              more often than --min-interval (default 60 s for cron; intervals are exempt)

Schedules are defined in code (queue_worker.schedule); the CLI reads those definitions (the task
modules of QUEUE_TASK_MODULES) and the `schedules` collection.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from queue_worker.cli.base import EXIT_FAILED, EXIT_OK, Cli, UsageError, non_negative, print_table
from queue_worker.job import parse_job_id
from queue_worker.schedules import Schedule
from queue_worker.schedules import registry as defined
from queue_worker.schedules.scheduler import Scheduler
from queue_worker.schedules.store import ScheduleStore
from queue_worker.schedules.timing import Every, shortest_gap_s, zone
from queue_worker.store import utcnow

UPCOMING = 5
MIN_CRON_INTERVAL_S = 60.0


def add_commands(sub: Any) -> None:
    """Add `schedules` and its subcommands to the CLI's subparsers."""
    group = sub.add_parser(
        "schedules", help="periodic jobs: list, pause, resume, trigger, validate"
    )
    group.set_defaults(command=cmd_list, json=False)
    actions = group.add_subparsers(metavar="ACTION")
    listing = actions.add_parser("list", help="schedules, next runs, last runs (the default)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(command=cmd_list)
    pause = actions.add_parser("pause", help="let ticks pass without jobs")
    pause.add_argument("name")
    pause.add_argument("--until", type=_instant, help="resume by itself at this ISO-8601 time")
    pause.set_defaults(command=cmd_pause)
    resume = actions.add_parser("resume", help="resume from the first tick after now")
    resume.add_argument("name")
    resume.set_defaults(command=cmd_resume)
    trigger = actions.add_parser("trigger", help="one extra run now (no tick consumed)")
    trigger.add_argument("name")
    trigger.set_defaults(command=cmd_trigger)
    validate = actions.add_parser("validate", help="check the definitions in the code")
    validate.add_argument(
        "--min-interval", type=non_negative, default=MIN_CRON_INTERVAL_S, metavar="S",
        help="cron expressions firing more often than this are refused (default: 60)",
    )  # fmt: skip
    validate.set_defaults(command=cmd_validate)


def cmd_list(args: argparse.Namespace, cli: Cli) -> int:
    now = utcnow()
    with cli.store() as store:
        docs = {doc["_id"]: doc for doc in ScheduleStore(store.db).all()}
        states = _job_states(store, docs.values())
    rows = [_summary(name, defined.schedules.get(name), docs.get(name), states, now)
            for name in sorted(set(docs) | set(defined.schedules))]  # fmt: skip
    if args.json:
        print(json.dumps(rows, default=str))
        return EXIT_OK
    if not rows:
        print("no schedules (define them with queue_worker.schedule in a task module)")
        return EXIT_OK
    table = [["name", "timing", "state", "next runs (local / UTC)", "last runs"]]
    for row in rows:
        upcoming = [f"{r['local']} / {r['utc']}" for r in row["next"]] or ["-"]
        last = [f"{r['tick']} {r['outcome']}{' ' + r['job_state'] if r['job_state'] else ''}"
                for r in row["last"]] or ["-"]  # fmt: skip
        for i in range(max(len(upcoming), len(last))):
            first = i == 0
            table.append([
                row["name"] if first else "", row["timing"] if first else "",
                row["state"] if first else "",
                upcoming[i] if i < len(upcoming) else "", last[i] if i < len(last) else "",
            ])  # fmt: skip
    print_table(table, sys.stdout)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, cli: Cli) -> int:
    with cli.store() as store:
        if not ScheduleStore(store.db).pause(args.name, args.until):
            return _unknown(args.name)
    until = f" until {args.until.isoformat()}" if args.until else ""
    print(f"{args.name} paused{until}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, cli: Cli) -> int:
    definition = _defined(args.name)
    now = utcnow()
    with cli.store() as store:
        first = definition.timing().next_after(now)
        if not ScheduleStore(store.db).resume(args.name, first, now=now):
            return _unknown(args.name)
    print(f"{args.name} resumed; next run {first.isoformat() if first else 'never'}")
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace, cli: Cli) -> int:
    definition = _defined(args.name)
    with cli.store() as store:
        store.ensure_indexes()
        job_id = Scheduler(store, [definition]).trigger(args.name, utcnow())
    print(job_id)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, cli: Cli) -> int:
    now = utcnow()
    problems = []
    for definition in defined.all():
        if cli.registry.find(definition.task) is None:
            problems.append(f"{definition.name}: no task named {definition.task!r}")
        if definition.catch_up_s > cli.settings.retention_s:
            problems.append(f"{definition.name}: catch_up_s exceeds QUEUE_RETENTION_S")
        timing = definition.timing()
        if timing.next_after(now) is None:
            problems.append(f"{definition.name}: {timing.describe()} never fires")
            continue
        gap = shortest_gap_s(timing, now)
        if not isinstance(timing, Every) and gap is not None and gap < args.min_interval:
            problems.append(
                f"{definition.name}: {timing.describe()} fires every {gap:g} s "
                f"(under the minimum of {args.min_interval:g} s)"
            )
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(defined.schedules)
    print(f"{count} schedule(s), {len(problems)} problem(s)")
    return EXIT_FAILED if problems else EXIT_OK


# -- plumbing ----------------------------------------------------------------------------------


def _summary(
    name: str, definition: Schedule | None, doc: dict[str, Any] | None,
    states: dict[str, str], now: datetime,
) -> dict[str, Any]:  # fmt: skip
    upcoming: list[dict[str, str]] = []
    if definition is not None:
        timing, tz_name = definition.timing(), definition.tz
        tick = doc.get("next_tick") if doc else None
        tick = tick if tick is not None and tick > now else timing.next_after(now)
        while tick is not None and len(upcoming) < UPCOMING:
            local = tick.astimezone(zone(tz_name))
            upcoming.append({"local": local.strftime("%Y-%m-%d %H:%M:%S %Z"),
                             "utc": tick.strftime("%Y-%m-%d %H:%M:%SZ")})  # fmt: skip
            tick = timing.next_after(tick)
    last = [
        {
            "tick": r["tick"].strftime("%Y-%m-%d %H:%M:%SZ"),
            "outcome": r["outcome"] + (f" x{r['count']}" if r.get("count", 1) > 1 else ""),
            "job_id": r.get("job_id"),
            "job_state": states.get(r.get("job_id") or "", ""),
        }
        for r in (doc or {}).get("last_ticks", [])[-5:]
    ]
    if doc is None:
        state = "not started (no scheduler has run it)"
    elif definition is None or doc.get("removed"):
        state = "removed from the code"
    elif doc.get("paused"):
        until = doc.get("paused_until")
        state = f"paused until {until.isoformat()}" if until else "paused"
    else:
        state = "active"
    timing_text = definition.timing().describe() if definition else "-"
    if definition is not None:
        timing_text += f"; missed={definition.missed.value} overlap={definition.overlap.value}"
    return {"name": name, "timing": timing_text, "state": state, "next": upcoming, "last": last,
            "last_success_at": (doc or {}).get("last_success_at")}  # fmt: skip


def _job_states(store: Any, docs: Any) -> dict[str, str]:
    ids = [oid for doc in docs for r in doc.get("last_ticks", [])
           if (oid := parse_job_id(r.get("job_id") or "")) is not None]  # fmt: skip
    states: dict[str, str] = {}
    for collection in store.in_move_order:
        for job in collection.find({"_id": {"$in": ids}}, {"state": 1}):
            states[str(job["_id"])] = job["state"]
    return states


def _defined(name: str) -> Schedule:
    definition = defined.schedules.get(name)
    if definition is None:
        raise UsageError(f"no schedule named {name!r} in the code (QUEUE_TASK_MODULES)")
    return definition


def _unknown(name: str) -> int:
    print(f"error: no schedule named {name!r} in the database", file=sys.stderr)
    return EXIT_FAILED


def _instant(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an ISO-8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
