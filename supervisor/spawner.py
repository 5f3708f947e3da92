"""The spawner: forks each kind of child with clean hands, and keeps the record of live ones.

Fork hygiene happens here: a new child drops the master's signal handlers and self-pipe and
closes the liveness files of its siblings before running its target. Database clients are never
inherited because the master never creates one; each target builds its own after the fork.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from supervisor.liveness import LivenessLink
from supervisor.process_ops import ChildTargets, ProcessOps
from supervisor.reasons import ChildExit, Retiring

log = logging.getLogger("supervisor.master")

HANDLED_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD,
)  # fmt: skip


class Kind(StrEnum):
    CONSUMER = "consumer"  # one per numbered slot
    SINGLETON = "singleton"  # one per name: the metrics exporter, the scheduler
    REAPER = "reaper"  # short-lived: releases a dead consumer's jobs


@dataclass
class ChildProc:
    """The master's record of one live child."""

    pid: int
    kind: Kind
    started_at: float
    slot: int | None = None  # a consumer's slot index
    singleton: str | None = None  # a singleton's name
    liveness: LivenessLink | None = None
    ready: bool = False
    retiring: Retiring | None = None  # why the master asked it to stop
    signalled: bool = False  # the stop signal was sent (reload waits for the successor)
    stop_deadline: float | None = None  # SIGKILL when passed
    hung: bool = False
    killed: bool = False
    releases_for: int | None = None  # a reaper: the dead consumer's pid


class Spawner:
    """Fork consumers, singletons and reapers; `children` maps pid → record."""

    def __init__(
        self,
        ops: ProcessOps,
        targets: ChildTargets,
        liveness_factory: Callable[[], LivenessLink],
    ) -> None:
        self.ops = ops
        self.targets = targets
        self.liveness_factory = liveness_factory
        self.children: dict[int, ChildProc] = {}
        self.close_in_child: list[int] = []  # the master's self-pipe

    def consumer(self, index: int, now: float) -> int | None:
        """Fork the consumer of slot `index`; return its pid (None if fork failed)."""
        liveness = self.liveness_factory()
        return self._fork(
            lambda: self.targets.consumer(index, liveness),
            ChildProc(0, Kind.CONSUMER, now, slot=index, liveness=liveness),
            f"consumer slot {index}",
        )

    def singleton(self, name: str, now: float) -> int | None:
        """Fork the singleton child `name`; return its pid (None if fork failed)."""
        liveness = self.liveness_factory()
        return self._fork(
            lambda: self.targets.singleton(name, liveness),
            ChildProc(0, Kind.SINGLETON, now, singleton=name, liveness=liveness),
            name,
        )

    def reaper(self, dead: ChildExit, now: float, timeout_s: float) -> int | None:
        """Fork a child that releases `dead`'s jobs; killed if it outlives `timeout_s`."""

        def target() -> int:
            self._after_fork(None)
            return self.targets.reaper(dead)

        pid = self._start(target)
        if pid is not None:
            self.children[pid] = ChildProc(
                pid, Kind.REAPER, now, releases_for=dead.pid, stop_deadline=now + timeout_s
            )
        return pid

    def _fork(self, run: Callable[[], int], record: ChildProc, what: str) -> int | None:
        def target() -> int:
            self._after_fork(record.liveness)
            return run()

        pid = self._start(target)
        if pid is None:
            if record.liveness is not None:
                record.liveness.close()
            return None
        record.pid = pid
        self.children[pid] = record
        log.info("%s started (pid %d)", what, pid)
        return pid

    def _start(self, target: Callable[[], int]) -> int | None:
        try:
            return self.ops.fork(target)
        except OSError as exc:
            log.error("fork failed: %s", exc)
            return None

    def _after_fork(self, keep: LivenessLink | None) -> None:
        """In a new child: drop the master's signal handling and other children's files."""
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in self.close_in_child:
            os.close(fd)
        for child in self.children.values():
            if child.liveness is not None and child.liveness is not keep:
                child.liveness.close()
