"""Periodic jobs without a leader, simulated: several schedulers and a consumer in one process on
one real database, a fake clock moved step by step, passes in a seeded random order, and faults
injected where real ones strike (a crash after a job's insert and before its key check, a crash
after the enqueue and before the cursor moves, a scheduler dropped mid-run, an outage of every
scheduler). Whatever the seed, every tick of an `all` schedule gets exactly one job that runs
exactly once, and the jobs of a `latest` schedule stand for every tick once, with one catch-up
job for the outage.

The same invariants the three-supervisor process test checked, without waiting on wall time: a
seed that fails is replayed exactly with `SIM_SEED=<seed>`.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from clocks import T0, FakeClock
from pymongo import MongoClient
from pymongo.database import Database
from waiting import wait_until

from queue_worker.consumer import Consumer
from queue_worker.idempotency import KEY_HOLD_S
from queue_worker.layout import IN_MOVE_ORDER
from queue_worker.schedules import Schedule
from queue_worker.schedules.scheduler import Scheduler, key_for
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import TaskContext, TaskRegistry

S = timedelta(seconds=1)
SEEDS = range(int(os.environ.get("SIM_SEEDS", "50")))
STEPS = 16  # passes before the outage, and again after it (0.5-1.5 simulated s each)
OUTAGE_S = 12  # every scheduler (and the consumer) down; then new schedulers start


class Crash(Exception):
    """A simulated kill -9 of a scheduler in the middle of its pass."""


class CrashAfterInsert:
    """A collection handle whose next insert_one is applied, and then the caller dies."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        self._real.insert_one(*args, **kwargs)
        raise Crash("after the insert, before the key check")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@dataclass
class Node:
    """One scheduler with a store of its own (its faults must not touch the others')."""

    scheduler: Scheduler
    store: JobStore

    def pass_once(self, now: datetime, fault: str) -> None:
        """Run one pass; `fault` kills it at one of the two places a kill matters."""
        keyed = self.store._keyed
        real_jobs, real_advance = keyed._jobs_j, self.scheduler.docs.advance
        if fault == "after_insert":
            keyed._jobs_j = CrashAfterInsert(real_jobs)  # type: ignore[assignment]
        elif fault == "before_cursor":

            def killed(*args: Any, **kwargs: Any) -> bool:
                raise Crash("after the enqueue, before the cursor moved")

            self.scheduler.docs.advance = killed  # type: ignore[method-assign]
        try:
            self.scheduler.run_once(now)
        except Crash:
            pass
        finally:
            keyed._jobs_j = real_jobs
            self.scheduler.docs.advance = real_advance  # type: ignore[method-assign]


@dataclass
class World:
    """The database, the clock, the schedulers alive, the consumer and what it ran."""

    db: Database[Any]
    rng: random.Random
    clock: FakeClock
    definitions: list[Schedule]
    settings: QueueSettings
    nodes: list[Node] = field(default_factory=list)
    ran: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    consumer: Consumer | None = None
    last_pass: datetime = T0
    outage: tuple[datetime, datetime] = (T0, T0)

    def store(self, registry: TaskRegistry | None = None) -> JobStore:
        return JobStore(self.db, self.settings, registry=registry, clock=self.clock)

    def node(self) -> Node:
        store = self.store()
        return Node(Scheduler(store, self.definitions), store)

    def start_node(self) -> None:
        node = self.node()
        node.scheduler.sync(self.clock.now)
        self.nodes.append(node)

    def start_consumer(self) -> None:
        registry = TaskRegistry()

        def noop(payload: dict[str, Any], ctx: TaskContext) -> None:
            with self.lock:
                self.ran[ctx.job.idempotency_key or "?"] += 1  # type: ignore[attr-defined]

        registry.task("sim.noop")(noop)
        store = self.store(registry)
        self.consumer = Consumer(
            store, registry, self.settings, owner="sim:1", clock=self.clock, concurrency=4
        )

    def work(self) -> None:
        """One consumer pass, then wait for its handlers (they return at once) and record
        their successes as its next pass would."""
        consumer = self.consumer
        assert consumer is not None
        consumer.run_once(self.clock.now)
        wait_until(
            lambda: all(s.finished or s.succeeded for s in consumer.slots.active),
            what="handlers to return",
        )
        consumer.slots.flush_acks(self.clock.now)
        consumer.slots.reap()

    def step(self, seconds: float) -> None:
        """Move time on, then let the live schedulers pass in a random order, each maybe hit
        by a fault, and the consumer work."""
        self.clock.advance(seconds)
        order = list(self.nodes)
        self.rng.shuffle(order)
        for node in order:
            if self.rng.random() < 0.3:
                continue  # this one is between passes now
            roll = self.rng.random()
            fault = "after_insert" if roll < 0.08 else "before_cursor" if roll < 0.16 else ""
            node.pass_once(self.clock.now, fault)
            if fault and len(self.nodes) > 1 and self.rng.random() < 0.5:
                self.nodes.remove(node)  # killed for good: it never comes back
        if self.rng.random() < 0.7:
            self.work()

    def settle(self) -> None:
        """With no scheduler left to add any, let every job become claimable (held copies
        too, KEY_HOLD_S late) and run."""
        self.nodes.clear()
        self.clock.advance(KEY_HOLD_S + 1)
        for _ in range(100):
            self.work()
            if not self.unfinished():
                break
            self.clock.advance(1)
        assert self.consumer is not None
        self.consumer.housekeeping.flush()

    def unfinished(self) -> int:
        live = {"state": {"$in": ["pending", "running"]}}
        return sum(self.db[name].count_documents(live) for name in IN_MOVE_ORDER[:2])

    def docs(self, name: str) -> list[dict[str, Any]]:
        """The schedule's job documents, once each (an archived job can be mid-move)."""
        by_id = {d["_id"]: d for c in IN_MOVE_ORDER for d in self.db[c].find({"schedule": name})}
        return list(by_id.values())


def run_world(db: Database[Any], seed: int, names: tuple[str, str]) -> World:
    every_tick, latest = names
    definitions = [
        Schedule(every_tick, "sim.noop", every_s=1, missed="all", overlap="allow"),
        Schedule(latest, "sim.noop", every_s=1, missed="latest", overlap="allow"),
    ]
    world = World(db, random.Random(seed), FakeClock(T0), definitions, QueueSettings())
    world.start_consumer()
    for _ in range(world.rng.randint(1, 3)):
        world.start_node()
    for _ in range(STEPS):
        world.step(world.rng.choice((0.5, 1.0, 1.0, 1.5)))
    world.nodes.clear()  # the outage: every scheduler down
    world.outage = (world.clock.now, world.clock.advance(OUTAGE_S))
    for _ in range(world.rng.randint(1, 3)):
        world.start_node()  # restarted, with fresh state
    for _ in range(STEPS):
        world.step(world.rng.choice((0.5, 1.0, 1.0, 1.5)))
    world.node().pass_once(world.clock.now, "")  # a clean pass: every due tick is dealt with
    world.last_pass = world.clock.now
    world.settle()
    return world


def check_all(world: World, name: str, end: datetime) -> None:
    """Every tick of the run has exactly one job, and it ran exactly once."""
    expected = [key_for(name, T0 + n * S) for n in range(1, int((end - T0) / S) + 1)]
    docs = world.docs(name)
    per_key = Counter(d["idempotency_key"] for d in docs if not withdrawn(d))
    bad = [k for k in expected if per_key[k] != 1]
    detail = [(d["idempotency_key"], d["state"], d.get("last_error"), "hold_run_at" in d)
              for d in docs if bad and d["idempotency_key"] == bad[0]]  # fmt: skip
    assert bad == [], f"{len(bad)} ticks without exactly one job; the first: {detail}"
    assert set(per_key) == set(expected), "jobs for ticks that never came"
    assert [k for k in expected if world.ran[k] != 1] == [], "ticks whose job did not run once"


def check_latest(world: World, name: str, end: datetime) -> None:
    """The jobs' tick ranges tile the run without gap or overlap; the ticks of the outage, which
    no scheduler saw, have exactly one job: the catch-up; every job ran once."""
    spans = sorted(
        (parse_tick(d["idempotency_key"], name), d["schedule_until"], d["idempotency_key"])
        for d in world.docs(name)
        if not withdrawn(d)
    )
    assert spans[0][0] == T0 + S
    for (_, until, _), (start, _, key) in zip(spans, spans[1:], strict=False):
        assert start == until + S, f"gap or overlap before {key}"
    assert spans[-1][1] == end
    down_from, down_to = world.outage
    unseen = [
        T0 + n * S for n in range(1, int((end - T0) / S) + 1) if down_from < T0 + n * S <= down_to
    ]
    catch_up = [
        (start, until) for start, until, _ in spans if start <= unseen[-1] and until >= unseen[0]
    ]
    assert len(catch_up) == 1 and catch_up[0][0] <= unseen[0] and catch_up[0][1] >= unseen[-1], (
        f"the outage's ticks {unseen[0]}..{unseen[-1]} are not one catch-up job: {catch_up}"
    )
    assert all(world.ran[key] == 1 for _, _, key in spans)


def withdrawn(doc: dict[str, Any]) -> bool:
    """A held copy its key's earlier job made redundant: cancelled unrun as its duplicate."""
    return doc["state"] == "cancelled" and str(doc.get("last_error", "")).startswith(
        "a duplicate of job"
    )


def parse_tick(key: str, name: str) -> datetime:
    return datetime.fromisoformat(key.removeprefix(f"cron:{name}:").replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def sim_database(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[Database[Any]]:
    """One database for every seed, with the queue's indexes (creating and dropping a database
    per seed costs the local server more than the seeds themselves)."""
    name = f"sim_{os.getpid()}"
    db: Database[Any] = mongo_client[name]
    JobStore(db, QueueSettings()).ensure_indexes()
    yield db
    mongo_client.drop_database(name)


@pytest.fixture
def sim_db(sim_database: Database[Any]) -> Database[Any]:
    """The simulation's database, emptied for this seed (claims scan whole collections on the
    local server: each seed's stays small)."""
    for name in sim_database.list_collection_names():
        sim_database[name].delete_many({})
    return sim_database


@pytest.mark.parametrize(
    "seed", [int(os.environ["SIM_SEED"])] if os.environ.get("SIM_SEED") else list(SEEDS)
)
def test_every_tick_gets_one_job_that_runs_once_whatever_the_order_and_the_faults(
    sim_db: Database[Any], seed: int
) -> None:
    """Schedulers passing in a random order, crashing after an insert or before the cursor,
    dropped for good, all down for an outage and restarted: an `all` schedule still has one job
    per tick, run once; a `latest` one covers each tick once with one catch-up for the outage."""
    world = run_world(sim_db, seed, ("sim.all", "sim.latest"))
    last_tick = T0 + int((world.last_pass - T0) / S) * S
    check_all(world, "sim.all", last_tick)
    check_latest(world, "sim.latest", last_tick)
