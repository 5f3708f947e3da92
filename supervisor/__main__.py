"""`python -m supervisor`: parse options, prepare the metrics directory, preflight, run the master.

Exit codes: 0 stopped cleanly; 2 bad option or queue setting; 3 a child failed to boot (task
import error, metrics port taken); 4 database unreachable at start; 5 every slot crash-looped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runtime import metrics_dir
from supervisor.errors import ExitCode, UsageError
from supervisor.liveness import Liveness, LivenessLink
from supervisor.reasons import ChildExit
from supervisor.settings import EXPORTER, SCHEDULER, SupervisorSettings, load_settings

if TYPE_CHECKING:
    from supervisor.process_ops import OsProcessOps

log = logging.getLogger("supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
PREFLIGHT_POLL_S = 0.05
PREFLIGHT_MESSAGES = {
    ExitCode.USAGE: "configuration error",
    ExitCode.BOOT_FAILURE: "consumers cannot boot",
    ExitCode.DATABASE_UNREACHABLE: "database unreachable",
}


class ForkedTargets:
    """What each child runs; modules are imported after the fork, in the child only."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings

    def consumer(self, slot: int, liveness: LivenessLink) -> int:
        from supervisor.child import run_consumer

        return run_consumer(self.settings, slot, liveness)

    def singleton(self, name: str, liveness: LivenessLink) -> int:
        if name == EXPORTER:
            from supervisor.exporter import run_exporter

            return run_exporter(self.settings, liveness)
        if name == SCHEDULER:
            from supervisor.scheduler import run_scheduler

            return run_scheduler(self.settings, liveness)
        raise ValueError(f"no singleton child named {name!r}")

    def reaper(self, dead: ChildExit) -> int:
        from supervisor.reaper import release_dead_child

        return release_dead_child(dead)


def preflight(settings: SupervisorSettings, ops: OsProcessOps) -> tuple[int, str]:
    """Run the preflight check in a child; return its exit code and message."""
    note = Liveness()

    def target() -> int:
        from supervisor.preflight import check

        return check(note, settings)

    stop: list[int] = []
    previous = {s: signal.signal(s, lambda n, f: stop.append(n)) for s in STOP_SIGNALS}
    try:
        pid = ops.fork(target)
        # Poll, so TERM/INT during a long database wait stops the check instead of waiting it out.
        while (status := _exited(pid)) is None:
            if stop:
                ops.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(PREFLIGHT_POLL_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    metrics_dir.process_died(pid)  # its database commands were counted: fold them, drop files
    message = note.note()
    note.close()
    if stop:
        return ExitCode.OK, f"stopped by {signal.Signals(stop[0]).name} during start-up"
    code = os.waitstatus_to_exitcode(status)
    return (code if code >= 0 else ExitCode.FAILURE), message


def _exited(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the supervisor until it is stopped; return the process exit code."""
    try:
        settings = load_settings(argv, os.environ)
    except UsageError as exc:
        print(f"python -m supervisor: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Before any metric module is imported: prometheus-client picks its mode per process.
    created = metrics_dir.prepare(os.environ, prefix="supervisor-metrics-")
    try:
        # Imported only now: prometheus-client picks its multiprocess mode at import time.
        from supervisor.master import Master
        from supervisor.process_ops import OsProcessOps

        ops = OsProcessOps()
        code, message = preflight(settings, ops)
        if code == ExitCode.OK and message:
            log.info("%s", message)  # stopped while starting: nothing to drain
            return code
        if code != ExitCode.OK:
            what = PREFLIGHT_MESSAGES.get(
                ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.FAILURE,
                "preflight failed",
            )
            print(
                f"python -m supervisor: {what}: {message or 'see the error above'}", file=sys.stderr
            )
            return code
        log.info(
            "starting %d consumer(s), concurrency %s, queues %s, metrics port %s",
            settings.workers,
            settings.concurrency or "default",
            ",".join(settings.queues) if settings.queues else "default",
            settings.metrics_port or "off",
        )
        master = Master(settings, ops, ForkedTargets(settings), Liveness)
        code = master.run()
        if master.failure:
            print(f"python -m supervisor: {master.failure}", file=sys.stderr)
        log.info("master exiting with code %d", code)
        return code
    finally:
        metrics_dir.remove(created)


if __name__ == "__main__":
    sys.exit(main())
