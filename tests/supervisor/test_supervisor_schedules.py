"""Periodic jobs without a leader, for real: three supervisors on one database, each running a
scheduler, while consumers and a whole supervisor are SIGKILLed; then an outage of every
scheduler. Every tick gets exactly one job; after the outage `all` makes up each missed tick once
and `latest` enqueues one catch-up job."""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import localdb
import psutil  # type: ignore[import-untyped]
import pytest
from pymongo import MongoClient
from pymongo.database import Database
from supervisor_harness import Supervisor, wait_until

from queue_worker.layout import IN_MOVE_ORDER
from queue_worker.schedules.scheduler import key_for

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mongo_uri() -> Iterator[str]:
    """A database server of this test's own (MONGODB_URI's, if set). The test is about
    schedulers under kills and an outage; at the end of the suite the shared local server has
    slowed down (docs/local-database.md) until enqueues time out and catch-ups lag past any
    sensible bound, which is a different test."""
    external = os.environ.get("MONGODB_URI")
    if external:
        yield external
        return
    data = Path(tempfile.mkdtemp(prefix="schedules-db-", dir=ROOT / "var"))
    server = localdb.start(data_dir=data / "data", log_path=data / "server.log")
    try:
        yield server.uri()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def mongo_client(mongo_uri: str) -> Iterator[MongoClient[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


ENV = {
    "QUEUE_TASK_MODULES": "queue_worker.builtin,supervisor_test_tasks,schedule_defs",
    "PYTHONPATH_EXTRA": str(HELPERS),
}
RUN_S = 62.0
OUTAGE_S = 20.0
S = timedelta(seconds=1)


def jobs_of(db: Database[Any], name: str) -> list[dict[str, Any]]:
    """The jobs that stand for the schedule's ticks, one document per job id. An enqueue that
    timed out (or was killed) between its insert and its key check leaves its copy held
    KEY_HOLD_S unclaimable. If the key's job already finished, the next enqueue of the key
    withdraws the copy, or the consumer that claims it cancels it unrun as "a duplicate of job
    <the tick's job>" (queue_worker/idempotency.py): beside another document for its key, such
    a copy never runs and is not counted. Alone, it is the tick's job, 60 s late, and counts."""
    by_key: dict[str, dict[Any, dict[str, Any]]] = {}
    for collection in IN_MOVE_ORDER:
        for doc in db[collection].find({"schedule": name}):
            by_key.setdefault(doc["idempotency_key"], {})[doc["_id"]] = doc
    chosen: list[dict[str, Any]] = []
    for docs in by_key.values():
        real = [d for d in docs.values() if not held(d)]
        chosen.extend(real or docs.values())
    return chosen


def held(doc: dict[str, Any]) -> bool:
    """A held copy: still held, or cancelled unrun as a duplicate."""
    if doc["state"] == "pending":
        return "hold_run_at" in doc
    return doc["state"] == "cancelled" and str(doc.get("last_error", "")).startswith(
        "a duplicate of job"
    )


def whole_seconds(start: datetime, end: datetime) -> list[datetime]:
    first = start.replace(microsecond=0) + S
    return [first + n * S for n in range(int((end - first) / S) + 1)]


def start_three(start_supervisor: Callable[..., Supervisor]) -> list[Supervisor]:
    sups = [start_supervisor("--workers", "2", "--concurrency", "2", env=ENV) for _ in range(3)]
    for sup in sups:
        wait_until(lambda sup=sup: sup.children("scheduler"), 30, f"a scheduler\n{sup.output()}")
    return sups


def test_three_supervisors_make_one_job_per_tick_through_kills_and_an_outage(
    start_supervisor: Callable[..., Supervisor], db: Database[Any]
) -> None:
    rng = random.Random(14)
    sups = start_three(start_supervisor)
    begin = datetime.now(UTC)
    killed_master = False
    while (datetime.now(UTC) - begin).total_seconds() < RUN_S:
        time.sleep(rng.uniform(0.5, 2.0))
        live = [s for s in sups if s.process.poll() is None]
        if not killed_master and (datetime.now(UTC) - begin).total_seconds() > RUN_S / 2:
            victim = rng.choice(live)
            victim.process.send_signal(signal.SIGKILL)  # the whole supervisor: master first
            killed_master = True
            continue
        consumers = [pid for s in live for pid in s.children()]
        if consumers:
            psutil.Process(rng.choice(consumers)).send_signal(signal.SIGKILL)
    for sup in sups:
        sup.stop()
    wait_until(lambda: all(not s.children("scheduler") for s in sups), 15, "schedulers gone")
    time.sleep(OUTAGE_S)  # the outage itself: nothing to wait for
    restarted = start_three(start_supervisor)
    back_at = datetime.now(UTC)
    wait_until(
        lambda: any(d["schedule_until"] > back_at for d in jobs_of(db, "test.every_second")),
        90, "ticks after the restart",  # a bound on a hang: a loaded server catches up slowly
    )  # fmt: skip
    for sup in restarted:
        sup.stop()

    # `all`, 1 s: each tick from the start to the restart has exactly one job.
    # By job id: a consumer killed mid-archive leaves a job in `jobs` and `jobs_done` at once.
    distinct = {d["_id"]: d["idempotency_key"] for d in jobs_of(db, "test.every_second")}
    keys = Counter(distinct.values())
    doubled = {k for k, n in keys.items() if n > 1}
    detail = [(d["idempotency_key"], d["state"], d.get("last_error"), d.get("finished_at"))
              for d in jobs_of(db, "test.every_second")
              if d["idempotency_key"] in doubled]  # fmt: skip
    assert not doubled, detail
    expected = {key_for("test.every_second", t) for t in whole_seconds(begin + 3 * S, back_at)}
    missing = sorted(expected - set(keys))
    assert not missing, f"{len(missing)} ticks without a job: {missing[:5]}"

    # `latest`: the jobs' tick ranges tile the run without gaps or overlaps, and exactly one of
    # them (the outage's catch-up) stands for many ticks.
    spans = sorted(
        {d["_id"]: (d["idempotency_key"].removeprefix("cron:test.latest:"), d["schedule_until"])
         for d in jobs_of(db, "test.latest")}.values()
    )  # fmt: skip
    catch_ups = [
        (tick, until) for tick, until in spans
        if until - datetime.fromisoformat(tick.replace("Z", "+00:00")) >= timedelta(seconds=10)
    ]  # fmt: skip
    assert len(catch_ups) == 1, catch_ups
    previous_until: datetime | None = None
    for tick, until in spans:
        start = datetime.fromisoformat(tick.replace("Z", "+00:00"))
        if previous_until is not None:
            assert start == previous_until + S, f"gap or overlap before {tick}: {spans}"
        previous_until = until
