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

from supervisor.errors import ChildExit
from supervisor.liveness import LivenessLink
from supervisor.process_ops import ChildTargets, ProcessOps

log = logging.getLogger("supervisor.master")

HANDLED_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD,
)  # fmt: skip


class Kind(StrEnum):
    CONSUMER = "consumer"
    EXPORTER = "exporter"
    REAPER = "reaper"


@dataclass
class ChildProc:
    """The master's record of one live child."""

    pid: int
    kind: Kind
    started_at: float
    slot: int | None = None
    liveness: LivenessLink | None = None
    ready: bool = False
    retiring: str | None = None  # why it was asked to stop: reload | scale | shutdown
    signalled: bool = False  # the stop signal was sent (reload waits for the successor)
    stop_deadline: float | None = None  # SIGKILL when passed
    hung: bool = False
    killed: bool = False
    releases_for: int | None = None  # a reaper: the dead consumer's pid


class Spawner:
    """Fork consumers, the exporter and reapers; `children` maps pid → record."""

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
        return self._fork(Kind.CONSUMER, index, now)

    def exporter(self, now: float) -> int | None:
        """Fork the metrics exporter; return its pid (None if fork failed)."""
        return self._fork(Kind.EXPORTER, None, now)

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

    def _fork(self, kind: Kind, index: int | None, now: float) -> int | None:
        liveness = self.liveness_factory()

        def target() -> int:
            self._after_fork(liveness)
            if kind is Kind.EXPORTER:
                return self.targets.exporter(liveness)
            assert index is not None
            return self.targets.consumer(index, liveness)

        pid = self._start(target)
        if pid is None:
            liveness.close()
            return None
        self.children[pid] = ChildProc(pid, kind, now, slot=index, liveness=liveness)
        where = "" if index is None else f" slot {index}"
        log.info("%s%s started (pid %d)", kind.value, where, pid)
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
