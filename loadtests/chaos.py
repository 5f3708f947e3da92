"""Chaos run: drain recorded jobs through the supervisor while its consumers keep being killed.

    python loadtests/chaos.py [--jobs N] [--kill-interval S] [--workers W] [--concurrency C]
                              [--no-db-restart] [--seed S]

What happens, in order: a local database is started on a fixed port and data directory (unless
MONGODB_URI is set); N `bench.sleep` jobs of random short duration plus one `bench.crash`
(poison) job are enqueued, each recording every execution in `bench_runs`; `python -m
supervisor` starts; every `--kill-interval` seconds one random consumer child gets SIGKILL;
once about 40 % of the jobs are done the database is killed and restarted; at about 85 % the
supervisor gets SIGTERM (it must drain and exit 0) and is started again to finish the rest.
All along, the supervisor's scheduler keeps a 1-second schedule (chaos_schedule.py, policy
`all`). The report says what was completed, lost (must be 0), executed twice, how long rescued
jobs waited, and the schedule's ticks: expected, enqueued, duplicated (must be 0), missed (must
be 0). Its last line is one JSON object; the exit code is non-zero if anything was lost or
ended in an unexpected state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chaos_config import ChaosConfig, parse_args
from chaos_report import Kill, Verdict, judge, states_line
from chaos_schedule import CHAOS_SCHEDULE
from harness import (
    ROOT,
    DatabaseServer,
    ManagedProcess,
    consumer_children,
    project_env,
    start_supervisor,
)
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from queue_worker.layout import BACKLOG, IN_MOVE_ORDER, JOBS
from queue_worker.schedules.scheduler import key_for

POLL_S = 0.1
COUNT_EVERY_S = 1.0
COUNT_NEAR_MARK_S = 0.1
NEAR_MARK = 0.2
REPORT_EVERY_S = 10.0
ENQUEUE_BATCH = 200
MIN_TICKS = 5  # the run goes on until the schedule has dealt with this many ticks
TICKS_WAIT_S = 120.0  # a bound on a hang, not an expectation


@dataclass
class Timeline:
    """What the run did and when, for the report."""

    kills: list[Kill]
    db_restart_s: float | None = None
    term_sent_s: float | None = None
    term_exit_code: int | None = None
    term_drain_s: float | None = None
    running_after_term: int | None = None
    finished_s: float | None = None
    final_exit_code: int | None = None


def enqueue_jobs(
    uri: str, database: str, config: ChaosConfig, rng: random.Random
) -> tuple[list[str], str, dict[str, float]]:
    """Enqueue the recorded sleep jobs with the poison job among them; return their ids."""
    from queue_worker.connection import connect
    from queue_worker.connection import database as queue_database
    from queue_worker.settings import QueueSettings
    from queue_worker.store import EnqueueRequest, JobStore

    settings = QueueSettings.from_env({"MONGODB_URI": uri, "MONGODB_DATABASE": database})
    client = connect(settings, app_name="chaos-enqueue")
    # Crashes, not failed attempts, must decide a killed job's fate: attempts stay ample.
    attempts = config.poison_crashes + 5
    requests = [
        EnqueueRequest(
            "bench.sleep",
            {"ms": rng.randint(config.min_ms, config.max_ms), "record": True},
            max_attempts=attempts,
        )
        for _ in range(config.jobs)
    ]
    requests.insert(
        config.jobs // 3, EnqueueRequest("bench.crash", {"record": True}, max_attempts=attempts)
    )
    try:
        store = JobStore(queue_database(client, settings), settings)
        store.ensure_indexes()
        jobs = []
        for start in range(0, len(requests), ENQUEUE_BATCH):
            jobs.extend(store.enqueue_many(requests[start : start + ENQUEUE_BATCH]))
    finally:
        client.close()
    ids = [job.id for job in jobs]
    poison_id = ids[config.jobs // 3]
    durations = {job.id: float(job.payload.get("ms", 0)) for job in jobs}
    return ids, poison_id, durations


class ChaosRun:
    """One run: the database, the supervisor, the kills, and the timeline of what happened."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.database = f"chaos_{datetime.now(UTC):%Y%m%d%H%M%S}"
        self.server = DatabaseServer.open(config.data_dir, config.port)
        self.uri = self.server.uri(self.database)
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            self.uri, tz_aware=True, serverSelectionTimeoutMS=2000, appname="chaos-observer"
        )
        self.db: Database[dict[str, Any]] = self.client[self.database]
        self.timeline = Timeline(kills=[])
        self.supervisor: ManagedProcess | None = None
        self.restart_due = False
        self.term_due = False
        self.log_path = config.out_dir / f"{self.database}-supervisor.log"
        self.started = time.monotonic()

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop(timeout_s=self.config.graceful_timeout_s + 10)
        self.client.close()
        self.server.stop()

    def start_supervisor(self) -> None:
        env = project_env(
            self.uri,
            self.database,
            {
                "QUEUE_ENABLE_BENCH_TASKS": "1",
                "QUEUE_LEASE_S": str(self.config.lease_s),
                "QUEUE_POISON_CRASHES": str(self.config.poison_crashes),
                "QUEUE_TASK_MODULES": "api.tasks,chaos_schedule",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "loadtests")]),
            },
        )
        # Kills every second are the scenario, not a crash loop: keep respawning, quickly.
        args = [
            "--graceful-timeout",
            str(self.config.graceful_timeout_s),
            "--crash-loop-exits",
            "1000000",
            "--backoff-cap",
            "1",
        ]
        self.supervisor = start_supervisor(
            env,
            self.log_path,
            workers=self.config.workers,
            concurrency=self.config.concurrency,
            extra_args=[*args, *self.config.supervisor_args],
        )

    def unfinished(self) -> int | None:
        """Return how many jobs are still pending or running (None while the DB is down)."""
        try:
            # The schedule's own jobs keep coming: only the enqueued batch counts.
            live = {"state": {"$in": ["pending", "running"]}, "schedule": {"$exists": False}}
            return sum(self.db[name].count_documents(live) for name in (BACKLOG, JOBS))
        except PyMongoError:
            return None

    def kill_random_consumer(self) -> None:
        assert self.supervisor is not None
        children = consumer_children(self.supervisor.pid)
        if not children:
            return
        victim = self.rng.choice(children)
        try:
            victim.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - it may have exited on its own meanwhile
            return
        self.timeline.kills.append(Kill(datetime.now(UTC), victim.pid))

    def restart_database(self) -> None:
        print(f"[{self.elapsed():6.1f}s] killing the database (SIGKILL)", flush=True)
        self.server.kill()
        time.sleep(self.config.db_down_s)  # the outage itself, not a synchronisation
        self.server.restart()
        self.timeline.db_restart_s = self.elapsed()
        print(f"[{self.elapsed():6.1f}s] database restarted", flush=True)

    def terminate_and_restart(self) -> None:
        assert self.supervisor is not None
        self.timeline.term_sent_s = self.elapsed()
        print(f"[{self.elapsed():6.1f}s] SIGTERM to the supervisor", flush=True)
        self.supervisor.signal(signal.SIGTERM)
        code = self.supervisor.wait(self.config.graceful_timeout_s + 30)
        if code is None:
            code = self.supervisor.stop(timeout_s=1)
            print("supervisor did not exit after SIGTERM: killed", flush=True)
        self.timeline.term_exit_code = code
        self.timeline.term_drain_s = round(self.elapsed() - self.timeline.term_sent_s, 2)
        self.timeline.running_after_term = self.db[JOBS].count_documents({"state": "running"})
        print(
            f"[{self.elapsed():6.1f}s] supervisor exited {code}; "
            f"{self.timeline.running_after_term} jobs left running; restarting it",
            flush=True,
        )
        self.start_supervisor()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def drive(self, total: int) -> None:
        """Kill, restart and terminate on schedule until nothing is left or progress stalls."""
        self.restart_due = self.config.db_restart and self.server.restartable
        self.term_due = True
        next_kill = next_count = time.monotonic()
        next_kill += self.config.kill_interval_s
        last_left, last_progress, next_report = total, time.monotonic(), 0.0
        while True:
            assert self.supervisor is not None
            now = time.monotonic()
            # Counting scans the claimed collection: once a second, not on every kill tick.
            left = self.unfinished() if now >= next_count else None
            if left is not None:
                # Near a mark, count often: a fast stretch must not jump past it unseen.
                near = self.term_due and 1 - left / total >= self.config.term_at - NEAR_MARK
                next_count = now + (COUNT_NEAR_MARK_S if near else COUNT_EVERY_S)
                if left == 0:
                    self.timeline.finished_s = self.elapsed()
                    return
                if left < last_left:
                    last_left, last_progress = left, now
                if now >= next_report:
                    next_report = now + REPORT_EVERY_S
                    print(f"[{self.elapsed():6.1f}s] {total - left}/{total} done, "
                          f"{len(self.timeline.kills)} kills", flush=True)  # fmt: skip
                self.act_on_progress(1 - left / total)
            if not self.still_going(now - last_progress):
                return
            if self.term_due and now >= next_kill:
                self.kill_random_consumer()
                next_kill = max(next_kill + self.config.kill_interval_s, now)
            time.sleep(POLL_S)

    def act_on_progress(self, done: float) -> None:
        """Restart the database, then terminate the supervisor, as the run reaches each mark."""
        if self.restart_due and done >= self.config.restart_at:
            self.restart_due = False
            self.restart_database()
        elif self.term_due and done >= self.config.term_at:
            self.term_due = False
            self.terminate_and_restart()

    def still_going(self, since_progress_s: float) -> bool:
        """Return False (and say why) when the run must give up waiting."""
        assert self.supervisor is not None
        if since_progress_s > self.config.stall_timeout_s:
            print(f"no progress for {self.config.stall_timeout_s}s: giving up", flush=True)
            return False
        if not self.supervisor.alive():
            print(f"supervisor exited on its own ({self.supervisor.process.returncode})")
            print(self.supervisor.log_tail(), flush=True)
            return False
        return True

    def wait_for_ticks(self, n: int) -> tuple[datetime, datetime]:
        """Wait (on the stored cursor, not the clock) until the schedule has dealt with `n`
        ticks since its first; return the first tick and the last dealt with. The window comes
        from the schedule itself, so a slow scheduler boot is not counted as missed ticks."""
        deadline = time.monotonic() + TICKS_WAIT_S
        while True:
            doc = self.db["schedules"].find_one({"_id": CHAOS_SCHEDULE}) or {}
            first = doc.get("created_at")
            cursor = doc.get("next_tick")
            if first is not None and cursor is not None:
                first_tick = first.replace(microsecond=0) + timedelta(seconds=1)
                if cursor - first_tick >= timedelta(seconds=n):
                    return first_tick, cursor - timedelta(seconds=1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the schedule did not reach {n} ticks: {doc}")
            time.sleep(0.2)  # polling the cursor with a deadline

    def schedule_ticks(self, start: datetime, end: datetime) -> dict[str, int]:
        """Count the schedule's ticks in [start, end]: expected (whole seconds), enqueued (with a
        job), duplicated (a key with two jobs), missed (no job)."""
        by_id = {  # by job id: a job caught mid-archive is in two collections at once
            doc["_id"]: doc["idempotency_key"]
            for name in IN_MOVE_ORDER
            for doc in self.db[name].find({"schedule": CHAOS_SCHEDULE}, {"idempotency_key": 1})
        }
        keys: dict[str, int] = {}
        for key in by_id.values():
            keys[key] = keys.get(key, 0) + 1
        first = start
        expected = [
            key_for(CHAOS_SCHEDULE, first + timedelta(seconds=n))
            for n in range(int((end - first).total_seconds()) + 1)
        ]
        return {
            "expected": len(expected),
            "enqueued": sum(1 for key in expected if key in keys),
            "duplicated": sum(1 for count in keys.values() if count > 1),
            "missed": sum(1 for key in expected if key not in keys),
        }

    def final_documents(self, ids: list[str]) -> list[dict[str, Any]]:
        from bson import ObjectId

        wanted = {"_id": {"$in": [ObjectId(i) for i in ids]}}
        names = IN_MOVE_ORDER
        return [doc for name in names for doc in self.db[name].find(wanted)]


def run(config: ChaosConfig) -> tuple[Verdict, dict[str, Any]]:
    """Run the whole scenario and return the verdict with the figures for the JSON line."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    chaos = ChaosRun(config)
    try:
        print(f"database {chaos.uri} (seed {config.seed})", flush=True)
        rng = random.Random(config.seed)
        ids, poison_id, durations = enqueue_jobs(chaos.uri, chaos.database, config, rng)
        print(f"enqueued {len(ids)} jobs (poison job {poison_id})", flush=True)
        chaos.started = time.monotonic()
        chaos.start_supervisor()
        chaos.drive(len(ids))
        ticks_from, ticks_to = chaos.wait_for_ticks(MIN_TICKS)
        wall_s = chaos.timeline.finished_s or chaos.elapsed()
        assert chaos.supervisor is not None
        chaos.timeline.final_exit_code = chaos.supervisor.stop(config.graceful_timeout_s + 10)
        chaos.supervisor = None
        verdict = judge(
            chaos.final_documents(ids),
            ids,
            poison_id,
            chaos.db.bench_runs.find({}, {"_id": 0}),
            chaos.timeline.kills,
            durations,
        )
        ticks = chaos.schedule_ticks(ticks_from, ticks_to)
    finally:
        chaos.close()
    figures = summary(config, chaos.timeline, verdict, wall_s)
    figures["schedule_ticks"] = ticks
    if ticks["duplicated"] or ticks["missed"]:
        figures["problems"].append(f"schedule ticks: {ticks}")
        figures["ok"] = False
    return verdict, figures


def summary(
    config: ChaosConfig, timeline: Timeline, verdict: Verdict, wall_s: float
) -> dict[str, Any]:
    """Return the flat figures of the run (the JSON line)."""
    figures = asdict(verdict)
    figures.update(
        kills=len(timeline.kills),
        jobs_per_s=round(verdict.completed / wall_s, 2) if wall_s else 0.0,
        wall_s=round(wall_s, 1),
        workers=config.workers,
        concurrency=config.concurrency,
        kill_interval_s=config.kill_interval_s,
        db_restarted=timeline.db_restart_s is not None,
        term_exit_code=timeline.term_exit_code,
        term_drain_s=timeline.term_drain_s,
        running_after_term=timeline.running_after_term,
        final_exit_code=timeline.final_exit_code,
        seed=config.seed,
    )
    figures["unexpected"] = verdict.unexpected[:20]
    figures["problems"] = problems(timeline)
    figures["ok"] = verdict.ok() and not figures["problems"]
    return figures


def problems(timeline: Timeline) -> list[str]:
    """Return what went wrong with the processes themselves (beyond job states)."""
    found = []
    if timeline.term_exit_code not in (None, 0):
        found.append(f"supervisor exited {timeline.term_exit_code} after SIGTERM (want 0)")
    if timeline.running_after_term:
        found.append(f"{timeline.running_after_term} jobs still running after the SIGTERM drain")
    if timeline.term_sent_s is None:
        found.append("the run finished before the SIGTERM phase (raise --jobs or lower --term-at)")
    if timeline.finished_s is None:
        found.append("the run ended before every job finished")
    return found


def print_report(verdict: Verdict, figures: dict[str, Any]) -> None:
    rows = [
        ("jobs enqueued (incl. 1 poison)", verdict.jobs),
        ("completed (succeeded)", verdict.completed),
        ("lost", verdict.lost),
        ("unexpected end states", len(verdict.unexpected)),
        ("buried as poison by the killer (every run SIGKILLed)", verdict.buried_by_killer),
        ("final states", states_line(verdict.states)),
        ("consumer SIGKILLs", figures["kills"]),
        ("duplicate executions", verdict.duplicates),
        ("  of which after a kill", verdict.duplicates_after_kill),
        ("  of which after the poison job's crash", verdict.duplicates_after_poison),
        ("jobs with no recorded execution", verdict.unrecorded),
        ("poison job", f"{verdict.poison_state} after {verdict.poison_crashes} crashes"),
        ("rescued jobs", verdict.rescued_jobs),
        ("rescue wait p50 / max (s)", f"{verdict.rescue_wait_p50_s} / {verdict.max_rescue_wait_s}"),
        (
            "pickup p50 / p99 (ms; backlog: all enqueued first)",
            f"{verdict.pickup_p50_ms} / {verdict.pickup_p99_ms}",
        ),
        ("throughput (jobs/s)", figures["jobs_per_s"]),
        ("wall time (s)", figures["wall_s"]),
        ("database restarted", figures["db_restarted"]),
        (
            "SIGTERM: exit code / drain (s)",
            f"{figures['term_exit_code']} / {figures['term_drain_s']}",
        ),
        ("jobs left running after SIGTERM", figures["running_after_term"]),
        (
            "schedule ticks (1 s): expected / enqueued / duplicated / missed",
            " / ".join(
                str(figures["schedule_ticks"][k])
                for k in ("expected", "enqueued", "duplicated", "missed")
            ),
        ),  # fmt: skip
    ]
    print("\n| chaos | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for line in [*verdict.unexpected[:20], *figures["problems"]]:
        print(f"UNEXPECTED: {line}")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    verdict, figures = run(config)
    print_report(verdict, figures)
    (config.out_dir / "last.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures), flush=True)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
