"""Unit tests of the consumer child's loop decisions, with a fake Consumer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from supervisor import child
from supervisor.child import ConsumerLoop, StopFlags
from supervisor.errors import ExitCode
from supervisor.settings import SupervisorSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeConsumer:
    def __init__(self, running: list[str] | None = None) -> None:
        self.running = list(running or [])
        self.jobs_finished = 0
        self.needs_replacement = False
        self.stop_requested = False
        self.passes = 0
        self.drained_with: float | None = None

    def run_once(self, now: datetime) -> int:
        self.passes += 1
        if self.stop_requested and self.running:
            self.running.pop()  # one job finishes per pass while draining
            self.jobs_finished += 1
        return 0

    def running_tasks(self) -> list[str]:
        return list(self.running)

    def request_stop(self) -> None:
        self.stop_requested = True

    def drain(self, timeout_s: float, between_passes: Callable[[], bool] | None = None) -> int:
        """Like Consumer.drain: passes until nothing runs, the time is up, or the hook says
        stop; then release what is left."""
        self.stop_requested = True
        self.drained_with = timeout_s
        while self.running and timeout_s > 0:
            self.run_once(NOW)
            if between_passes is not None and not between_passes():
                break
        released, self.running = len(self.running), []
        return released


class FakeLiveness:
    def __init__(self) -> None:
        self.reports = 0

    def notify(self) -> None:
        self.reports += 1

    def mark_ready(self) -> None: ...

    def leave_note(self, message: str) -> None: ...

    def last_report(self) -> float:
        return 0.0

    def is_ready(self) -> bool:
        return True

    def note(self) -> str:
        return ""

    def close(self) -> None: ...


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child.setproctitle, "setproctitle", lambda title: None)
    monkeypatch.setattr(child, "PASS_WAIT_S", 0.0)


def make(consumer: FakeConsumer, **overrides: Any) -> tuple[ConsumerLoop, StopFlags, FakeLiveness]:
    values: dict[str, Any] = dict(workers=1, concurrency=None, queues=None, graceful_timeout_s=5)
    values.update(overrides)
    flags, liveness = StopFlags(), FakeLiveness()
    loop = ConsumerLoop(consumer, SupervisorSettings(**values), 0, liveness, flags)  # type: ignore[arg-type]
    return loop, flags, liveness


def test_each_pass_reports_liveness_from_the_loop() -> None:
    """A normal pass runs the consumer once and reports liveness once."""
    consumer = FakeConsumer()
    loop, _, liveness = make(consumer)
    assert loop.tick(NOW) is None
    assert (consumer.passes, liveness.reports) == (1, 1)


def test_term_lets_running_jobs_finish_then_exits_zero() -> None:
    """After TERM the loop stops claiming, waits for running jobs, then drains what is left."""
    consumer = FakeConsumer(running=["a", "b"])
    loop, flags, liveness = make(consumer)
    flags.on_term(15, None)
    assert loop.tick(NOW) == ExitCode.OK
    assert consumer.stop_requested and consumer.jobs_finished == 2
    assert consumer.drained_with == 5 and liveness.reports >= 2


def test_quit_releases_at_once_without_waiting() -> None:
    """After QUIT nothing more runs: the jobs are released immediately."""
    consumer = FakeConsumer(running=["a"])
    loop, flags, _ = make(consumer)
    flags.on_quit(3, None)
    assert loop.tick(NOW) == ExitCode.OK
    assert consumer.jobs_finished == 0 and consumer.passes == 0
    assert consumer.drained_with == 0.0


def test_overrun_job_ends_the_child_with_the_timeout_code() -> None:
    """needs_replacement (a job overran its timeout) → drain and exit JOB_TIMEOUT."""
    consumer = FakeConsumer()
    consumer.needs_replacement = True
    loop, _, _ = make(consumer)
    assert loop.tick(NOW) == ExitCode.JOB_TIMEOUT


def test_started_jobs_reaching_the_limit_recycle_the_child() -> None:
    """finished + running >= --max-jobs-per-child → RECYCLE_JOBS."""
    consumer = FakeConsumer(running=["a"])
    consumer.jobs_finished = 2
    loop, _, _ = make(consumer, max_jobs_per_child=3)
    assert loop.tick(NOW) == ExitCode.RECYCLE_JOBS


def test_memory_is_not_checked_before_the_first_job() -> None:
    """A child over the memory limit at boot keeps running (no replacement loop)."""
    consumer = FakeConsumer()
    loop, _, _ = make(consumer, max_memory_mb=1)
    assert loop.tick(NOW) is None
    consumer.jobs_finished = 1
    assert loop.tick(NOW) == ExitCode.RECYCLE_MEMORY


def test_the_standalone_consumers_replace_me_code_is_a_planned_timeout_restart() -> None:
    """`python -m queue_worker work` exits EXIT_NEEDS_REPLACEMENT when threads overran their
    timeout; the supervisor reads that code as a timeout replacement, not a boot failure."""
    from queue_worker import EXIT_NEEDS_REPLACEMENT
    from supervisor.reasons import EXIT_CODE_RESTARTS, RestartReason

    assert EXIT_CODE_RESTARTS[EXIT_NEEDS_REPLACEMENT] is RestartReason.TIMEOUT
    assert EXIT_NEEDS_REPLACEMENT != ExitCode.BOOT_FAILURE
