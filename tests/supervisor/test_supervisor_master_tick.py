"""Unit tests of Master.tick(): fork, kill, wait and clocks are fakes, as in gunicorn's tests."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client import REGISTRY

from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.master import Master
from supervisor.reasons import ChildExit, DeathCause
from supervisor.settings import SupervisorSettings
from supervisor.spawner import Kind


@dataclass
class FakeLiveness:
    ready: bool = False
    reported_at: float = 1000.0
    message: str = ""
    closed: bool = False

    def notify(self) -> None: ...

    def mark_ready(self) -> None: ...

    def leave_note(self, message: str) -> None:
        self.message = message

    def last_report(self) -> float:
        return self.reported_at

    def is_ready(self) -> bool:
        return self.ready

    def note(self) -> str:
        return self.message

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeOps:
    now: float = 100.0
    wall: float = 1000.0
    next_pid: int = 1000
    forked: list[int] = field(default_factory=list)
    kills: list[tuple[int, int]] = field(default_factory=list)
    exits: list[tuple[int, int]] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)

    def fork(self, target: Callable[[], int]) -> int:
        self.next_pid += 1
        self.forked.append(self.next_pid)
        return self.next_pid

    def kill(self, pid: int, sig: int) -> None:
        self.kills.append((pid, sig))

    def reap(self) -> tuple[int, int] | None:
        return self.exits.pop(0) if self.exits else None

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def mark_dead(self, pid: int) -> None:
        self.dead.append(pid)

    def set_title(self, title: str) -> None:
        self.titles.append(title)


class NoTargets:
    def consumer(self, slot: int, liveness: LivenessLink) -> int:
        raise AssertionError("fake forks never run targets")

    def singleton(self, name: str, liveness: LivenessLink) -> int:
        raise AssertionError("fake forks never run targets")

    def reaper(self, dead: ChildExit) -> int:
        raise AssertionError("fake forks never run targets")


def killed_by(sig: int) -> int:
    return sig  # wait status of a process killed by a signal (no core dump)


def exited(code: int) -> int:
    return code << 8


def restarts(reason: str) -> float:
    return REGISTRY.get_sample_value("supervisor_restarts_total", {"reason": reason}) or 0.0


class Harness:
    def __init__(self, **overrides: object) -> None:
        values: dict[str, object] = dict(
            workers=2,
            concurrency=None,
            queues=None,
            graceful_timeout_s=10.0,
            hang_timeout_s=5.0,
            kill_grace_s=2.0,
            boot_timeout_s=8.0,
            backoff_base_s=0.5,
            backoff_cap_s=4.0,
            crash_loop_exits=3,
            crash_loop_window_s=60.0,
            scheduler=False,
        )
        values.update(overrides)
        self.settings = SupervisorSettings(**values)  # type: ignore[arg-type]
        self.ops = FakeOps()
        self.livenesses: list[FakeLiveness] = []
        self.master = Master(self.settings, self.ops, NoTargets(), self._liveness)

    def _liveness(self) -> FakeLiveness:
        link = FakeLiveness(reported_at=self.ops.wall)
        self.livenesses.append(link)
        return link

    def consumers(self) -> list[int]:
        return [c.pid for c in self.master.children.values() if c.kind is Kind.CONSUMER]

    def reapers(self) -> list[int]:
        return [c.pid for c in self.master.children.values() if c.kind is Kind.REAPER]

    def mark_all_ready(self) -> None:
        for child in self.master.children.values():
            if child.liveness is not None:
                assert isinstance(child.liveness, FakeLiveness)
                child.liveness.ready = True
                child.liveness.reported_at = self.ops.wall

    def advance(self, seconds: float) -> None:
        self.ops.now += seconds
        self.ops.wall += seconds

    def signal(self, signum: int) -> int | None:
        self.master.record_signal(signum)
        return self.master.tick()


def test_first_tick_forks_one_consumer_per_slot_and_the_exporter() -> None:
    """The first pass fills every slot and starts the exporter when a metrics port is set."""
    h = Harness(metrics_port=9300)
    assert h.master.tick() is None
    assert len(h.consumers()) == 2
    singletons = [c for c in h.master.children.values() if c.kind is Kind.SINGLETON]
    assert [c.singleton for c in singletons] == ["exporter"]
    assert h.ops.titles[-1] == "supervisor: master [2 workers]"


def test_crashed_consumer_gets_a_reaper_and_a_backed_off_replacement() -> None:
    """SIGKILL of a consumer forks a reaper with the crash, then refills the slot after backoff."""
    h = Harness()
    h.master.tick()
    victim = h.consumers()[0]
    before = restarts("crash")
    h.ops.exits.append((victim, killed_by(signal.SIGKILL)))
    h.master.tick()
    assert victim in h.ops.dead  # its live metrics files are dropped
    assert len(h.reapers()) == 1
    assert len(h.consumers()) == 1  # not respawned in the same instant: backoff
    assert restarts("crash") == before + 1
    h.advance(0.5)  # base 0.5 s, jittered into [0.25, 0.5]
    h.master.tick()
    assert len(h.consumers()) == 2


def test_reaper_receives_the_dead_childs_pid_signal_and_reason() -> None:
    """The reaper is told which pid died and how, so it can record the crash on each job."""
    h = Harness(workers=1)
    seen: list[ChildExit] = []

    class Targets(NoTargets):
        def reaper(self, dead: ChildExit) -> int:
            seen.append(dead)
            return 0

    targets: list[Callable[[], int]] = []
    h.master.spawner.targets = Targets()
    real_fork = h.ops.fork

    def fork(target: Callable[[], int]) -> int:
        targets.append(target)
        return real_fork(target)

    h.ops.fork = fork  # type: ignore[method-assign]
    h.master.tick()
    victim = h.consumers()[0]
    h.ops.exits.append((victim, killed_by(signal.SIGSEGV)))
    h.master.tick()
    h.master.spawner._after_fork = lambda keep: None  # type: ignore[method-assign]
    assert targets[-1]() == 0
    assert (seen[0].pid, seen[0].signal, seen[0].exit_code, seen[0].cause) == (
        victim,
        signal.SIGSEGV,
        None,
        DeathCause.CRASH,
    )


def test_recycled_consumer_is_replaced_at_once_without_a_reaper() -> None:
    """A child that exits with a recycle code released its own jobs: replace it, count why."""
    h = Harness()
    h.master.tick()
    victim = h.consumers()[0]
    before = restarts("recycle_memory")
    h.ops.exits.append((victim, exited(ExitCode.RECYCLE_MEMORY)))
    h.master.tick()
    assert h.reapers() == []
    assert len(h.consumers()) == 2
    assert restarts("recycle_memory") == before + 1


def test_job_timeout_exit_counts_as_a_timeout_restart() -> None:
    """A child replaced because a job overran its timeout is counted under reason timeout."""
    h = Harness()
    h.master.tick()
    before = restarts("timeout")
    h.ops.exits.append((h.consumers()[0], exited(ExitCode.JOB_TIMEOUT)))
    h.master.tick()
    assert restarts("timeout") == before + 1
    assert len(h.consumers()) == 2


def test_boot_failure_stops_the_master_with_the_childs_message() -> None:
    """A consumer that cannot boot stops the pool (no fork loop) and its reason is kept."""
    h = Harness()
    h.master.tick()
    first, second = h.consumers()
    h.livenesses[0].message = "cannot import task module 'tasks.broken'"
    h.ops.exits.append((first, exited(ExitCode.BOOT_FAILURE)))
    assert h.master.tick() is None
    assert (second, signal.SIGTERM) in h.ops.kills
    assert h.master.failure is not None and "tasks.broken" in h.master.failure
    forked = len(h.ops.forked)
    h.ops.exits.append((second, exited(0)))
    assert h.master.tick() == ExitCode.BOOT_FAILURE
    assert len(h.ops.forked) == forked  # nothing respawned while failing


def test_slot_that_crash_loops_stops_being_respawned() -> None:
    """K abnormal exits within T mark a slot crash-looping: no more forks for it."""
    h = Harness(crash_loop_exits=3)
    h.master.tick()
    for _ in range(3):
        pid = h.master.slots[0].pid
        assert pid is not None
        h.ops.exits.append((pid, exited(1)))
        h.master.tick()
        h.advance(5)
        h.master.tick()
    assert h.master.slots[0].crash_looping
    assert h.master.slots[0].pid is None
    assert REGISTRY.get_sample_value("supervisor_crash_looping_slots") == 1
    assert h.master.stopping is None  # slot 1 still works


def test_every_slot_crash_looping_exits_non_zero() -> None:
    """When no slot can run, the master stops with the crash-loop exit code."""
    h = Harness(workers=1, crash_loop_exits=2)
    h.master.tick()
    code = None
    for _ in range(2):
        pid = h.master.slots[0].pid
        assert pid is not None
        h.ops.exits.append((pid, killed_by(signal.SIGKILL)))
        h.master.tick()
        h.advance(5)
        code = h.master.tick()
    # The reapers still release the jobs before the master exits.
    assert code is None and h.master.stopping == "graceful"
    for pid in h.reapers():
        h.ops.exits.append((pid, exited(0)))
    assert h.master.tick() == ExitCode.CRASH_LOOP


def test_stale_child_is_aborted_then_killed_and_released_as_hung() -> None:
    """No liveness report for hang_timeout: SIGABRT, SIGKILL after the grace, reaper says hang."""
    h = Harness(workers=1)
    h.master.tick()
    h.mark_all_ready()
    h.master.tick()
    pid = h.consumers()[0]
    h.advance(5.5)
    h.master.tick()
    assert h.ops.kills[-1] == (pid, signal.SIGABRT)
    h.advance(2.1)
    h.master.tick()
    assert h.ops.kills[-1] == (pid, signal.SIGKILL)
    before = restarts("hang")
    h.ops.exits.append((pid, killed_by(signal.SIGKILL)))
    h.master.tick()
    assert restarts("hang") == before + 1
    assert len(h.reapers()) == 1


def test_child_reporting_liveness_is_left_alone() -> None:
    """A child whose reports keep coming is never signalled."""
    h = Harness(workers=1)
    h.master.tick()
    for _ in range(10):
        h.mark_all_ready()
        h.advance(1.0)
        h.master.tick()
    assert h.ops.kills == []


def test_child_that_never_boots_is_aborted_after_the_boot_timeout() -> None:
    """A child that does not report ready within boot_timeout is treated as hung."""
    h = Harness(workers=1)
    h.master.tick()
    h.advance(8.5)
    h.master.tick()
    assert h.ops.kills == [(h.consumers()[0], signal.SIGABRT)]


def test_term_drains_every_child_and_exits_zero_once_all_are_gone() -> None:
    """SIGTERM: TERM to each consumer, no respawns, exit 0 after the last child is reaped."""
    h = Harness()
    h.master.tick()
    pids = h.consumers()
    assert h.signal(signal.SIGTERM) is None
    assert sorted(p for p, s in h.ops.kills if s == signal.SIGTERM) == sorted(pids)
    h.ops.exits.append((pids[0], exited(0)))
    assert h.master.tick() is None
    assert len(h.ops.forked) == 2
    h.ops.exits.append((pids[1], exited(0)))
    assert h.master.tick() == 0


def test_child_missing_the_drain_deadline_is_killed_and_its_jobs_released() -> None:
    """A child still running after graceful timeout + grace gets SIGKILL and a reaper."""
    h = Harness(workers=1)
    h.master.tick()
    pid = h.consumers()[0]
    h.signal(signal.SIGTERM)
    h.advance(12.5)
    h.master.tick()
    assert h.ops.kills[-1] == (pid, signal.SIGKILL)
    h.ops.exits.append((pid, killed_by(signal.SIGKILL)))
    assert h.master.tick() is None  # waits for the reaper
    assert len(h.reapers()) == 1
    h.ops.exits.append((h.reapers()[0], exited(0)))
    assert h.master.tick() == 0


def test_quit_sends_quit_to_every_child() -> None:
    """SIGQUIT asks each child to release its jobs now (fast stop)."""
    h = Harness()
    h.master.tick()
    h.signal(signal.SIGQUIT)
    assert sorted(p for p, s in h.ops.kills if s == signal.SIGQUIT) == sorted(h.consumers())


def test_ttin_adds_and_ttou_removes_a_consumer() -> None:
    """TTIN forks one more consumer; TTOU stops the highest slot gracefully."""
    h = Harness()
    h.master.tick()
    h.signal(signal.SIGTTIN)
    assert len(h.consumers()) == 3
    third = h.master.slots[2].pid
    h.signal(signal.SIGTTOU)
    assert (third, signal.SIGTERM) in h.ops.kills
    assert 2 not in h.master.slots
    assert h.ops.titles[-1] == "supervisor: master [2 workers]"


def test_ttou_never_goes_below_one_consumer() -> None:
    """The last consumer is kept: TTOU at one consumer does nothing."""
    h = Harness(workers=1)
    h.master.tick()
    h.signal(signal.SIGTTOU)
    assert h.master.desired == 1 and h.ops.kills == []


def test_hup_starts_successors_before_stopping_predecessors() -> None:
    """HUP forks a new consumer per slot; each old one is stopped once its successor is ready."""
    h = Harness()
    h.master.tick()
    old = h.consumers()
    h.signal(signal.SIGHUP)
    new = [p for p in h.consumers() if p not in old]
    assert len(new) == 2 and h.ops.kills == []
    h.mark_all_ready()
    h.master.tick()
    assert sorted(p for p, s in h.ops.kills if s == signal.SIGTERM) == sorted(old)
    for pid in old:
        h.ops.exits.append((pid, exited(0)))
    h.master.tick()
    assert sorted(h.consumers()) == sorted(new)


@pytest.mark.parametrize("sig", [signal.SIGCHLD])
def test_chld_only_wakes_the_loop(sig: int) -> None:
    """SIGCHLD changes nothing by itself: reaping happens on every tick."""
    h = Harness()
    h.master.tick()
    assert h.signal(sig) is None
    assert h.ops.kills == []


def test_child_dying_of_our_stop_signal_during_boot_is_not_a_crash() -> None:
    """TERM that kills a child before its handler exists is a stop, not a crash: no restart
    is counted, and a reaper releases without recording a crash."""
    h = Harness(workers=1)
    h.master.tick()
    pid = h.consumers()[0]
    before = restarts("crash")
    h.signal(signal.SIGTERM)
    h.ops.exits.append((pid, killed_by(signal.SIGTERM)))
    h.master.tick()
    assert restarts("crash") == before
    reaper = h.master.children[h.reapers()[0]]
    assert reaper.releases_for == pid


def test_stop_does_not_postpone_killing_a_hung_child() -> None:
    """A child already aborted for hanging keeps its short kill deadline when TERM arrives."""
    h = Harness(workers=1)
    h.master.tick()
    h.mark_all_ready()
    h.master.tick()
    pid = h.consumers()[0]
    h.advance(5.5)
    h.master.tick()  # SIGABRT
    h.signal(signal.SIGTERM)
    h.advance(2.1)
    h.master.tick()
    assert h.ops.kills[-1] == (pid, signal.SIGKILL)


class TwoSingletons(SupervisorSettings):
    """Settings asking for two singleton children (as the scheduler will be the second)."""

    def singletons(self) -> tuple[str, ...]:
        return ("exporter", "scheduler")


def singleton_pids(h: Harness, name: str) -> list[int]:
    return [c.pid for c in h.master.children.values() if c.singleton == name]


def test_each_singleton_runs_once_is_respawned_after_a_crash_and_replaced_on_hup() -> None:
    """Singletons are general: exactly one child per name; a crashed one comes back after the
    backoff (no reaper: it holds no jobs); HUP stops each and starts it afresh once it exited,
    never two at a time; QUIT/TERM stop them with the consumers."""
    h = Harness()
    h.master = Master(TwoSingletons(**vars(h.settings)), h.ops, NoTargets(), h._liveness)
    h.master.tick()
    exporter, scheduler = singleton_pids(h, "exporter"), singleton_pids(h, "scheduler")
    assert len(exporter) == len(scheduler) == 1
    h.ops.exits.append((scheduler[0], killed_by(signal.SIGKILL)))
    h.master.tick()
    assert singleton_pids(h, "scheduler") == [] and h.reapers() == []
    h.advance(0.5)
    h.master.tick()
    respawned = singleton_pids(h, "scheduler")
    assert len(respawned) == 1 and respawned != scheduler
    h.mark_all_ready()
    h.signal(signal.SIGHUP)
    assert (respawned[0], signal.SIGQUIT) in h.ops.kills  # singletons stop fast
    h.master.tick()
    assert singleton_pids(h, "scheduler") == respawned  # the old one has not exited yet
    h.ops.exits.extend([(respawned[0], exited(0)), (exporter[0], exited(0))])
    h.master.tick()
    fresh = singleton_pids(h, "scheduler")
    assert len(fresh) == 1 and fresh != respawned
    assert len(singleton_pids(h, "exporter")) == 1 and singleton_pids(h, "exporter") != exporter


def test_a_singleton_that_cannot_boot_stops_the_master() -> None:
    """A singleton exiting with the boot-failure code stops everything with exit code 3."""
    h = Harness()
    h.master = Master(TwoSingletons(**vars(h.settings)), h.ops, NoTargets(), h._liveness)
    h.master.tick()
    h.ops.exits.append((singleton_pids(h, "scheduler")[0], exited(ExitCode.BOOT_FAILURE)))
    h.master.tick()
    assert h.master.failure is not None and "scheduler" in h.master.failure
    for pid in list(h.master.children):
        h.ops.exits.append((pid, exited(0)))
    assert h.master.tick() == ExitCode.BOOT_FAILURE
