"""A consumer child: boot after the fork, then loop over `Consumer.run_once`, reporting liveness.

Exit codes tell the master why the child ended (errors.ExitCode): 0 after a requested stop,
BOOT_FAILURE if it never got to its loop, RECYCLE_JOBS / RECYCLE_MEMORY / JOB_TIMEOUT for a
planned replacement (after draining and releasing its own jobs). A crash is whatever the kernel
says; the master's reaper then releases the jobs.

Signals: TERM drains (stop claiming, finish within --graceful-timeout, release the rest), QUIT
releases everything at once. INT, HUP, TTIN and TTOU are ignored: a terminal sends them to the
whole process group, and only the master decides.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]
import setproctitle

from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.outage import watch_for_outages
from supervisor.settings import SupervisorSettings

if TYPE_CHECKING:
    from pymongo import MongoClient

    from queue_worker.consumer import Consumer

log = logging.getLogger("supervisor.child")
PASS_WAIT_S = 0.05  # upper bound on how late a freed slot or a signal is noticed
MEMORY_CHECK_EVERY_S = 1.0
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


class StopFlags:
    """Set by signal handlers (nothing else happens in them); read by the loop.

    No Event.set() here: a handler runs between two bytecodes of the main thread, possibly while
    that thread holds the Event's lock inside wait(), which would deadlock.
    """

    def __init__(self) -> None:
        self.graceful = False
        self.fast = False

    def on_term(self, signum: int, frame: Any) -> None:
        self.graceful = True

    def on_quit(self, signum: int, frame: Any) -> None:
        self.fast = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGQUIT, self.on_quit)
        for signum in IGNORED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


class ConsumerLoop:
    """Drive one Consumer: one pass per `tick`, deciding when this child should end."""

    def __init__(
        self,
        consumer: Consumer,
        settings: SupervisorSettings,
        slot: int,
        liveness: LivenessLink,
        flags: StopFlags,
    ) -> None:
        self.consumer = consumer
        self.settings = settings
        self.slot = slot
        self.liveness = liveness
        self.flags = flags
        self.master_pid = os.getppid()
        self.process = psutil.Process()
        self._title = ""
        self._next_memory_check = 0.0

    def tick(self, now: datetime) -> int | None:
        """Do one pass; return an exit code once this child should end (after stopping)."""
        if self.flags.fast:
            return self.stop(ExitCode.OK, fast=True)
        reason = self.exit_reason(now)
        if reason is not None:
            return self.stop(reason)
        self.consumer.run_once(now)
        self.liveness.notify()
        self.update_title()
        return None

    def exit_reason(self, now: datetime) -> int | None:
        """Return why the child should now drain and exit, or None to keep consuming."""
        if self.flags.graceful or os.getppid() != self.master_pid:
            return ExitCode.OK  # asked to stop, or orphaned by a dead master
        if self.consumer.needs_replacement:
            return ExitCode.JOB_TIMEOUT
        limit = self.settings.max_jobs_per_child
        # Started jobs, not finished ones: a pass may claim right after reaping the last one.
        started = self.consumer.jobs_finished + len(self.consumer.running_tasks())
        if limit and started >= limit:
            return ExitCode.RECYCLE_JOBS
        # Only after a job: a child over the limit at boot would otherwise be replaced forever.
        checking = self.settings.max_memory_mb and self.consumer.jobs_finished
        if checking and now.timestamp() >= self._next_memory_check:
            self._next_memory_check = now.timestamp() + MEMORY_CHECK_EVERY_S
            rss_mb = self.process.memory_info().rss / 2**20
            if rss_mb > self.settings.max_memory_mb:
                log.warning(
                    "slot %d RSS %.0f MiB > %d MiB: recycling",
                    self.slot,
                    rss_mb,
                    self.settings.max_memory_mb,
                )
                return ExitCode.RECYCLE_MEMORY
        return None

    def stop(self, code: int, *, fast: bool = False) -> int:
        """Stop claiming; unless fast, let running jobs finish in time; release the rest."""

        def still_draining() -> bool:
            # Liveness keeps being reported while jobs finish; QUIT cuts the wait short.
            self.liveness.notify()
            self.update_title("draining")
            return not self.flags.fast

        timeout_s = 0.0 if fast else self.settings.graceful_timeout_s
        released = self.consumer.drain(timeout_s, between_passes=still_draining)
        if released:
            log.info("slot %d released %d job(s) on stop", self.slot, released)
        return code

    def update_title(self, state: str = "consumer") -> None:
        """Show slot and running tasks in `ps`; a syscall only when the text changes."""
        tasks = self.consumer.running_tasks()
        title = f"supervisor: {state} slot={self.slot} running={','.join(tasks) or '-'}"
        if title != self._title:
            self._title = title
            setproctitle.setproctitle(title)

    def run(self) -> int:
        """Tick until an exit code comes out."""
        while (code := self.tick(datetime.now(UTC))) is None:
            # Wakes as soon as a job finishes, so a freed slot claims again at once; signals
            # only set flags, so PASS_WAIT_S bounds how late one is noticed.
            self.consumer.wait_for_work(datetime.now(UTC))
        return code


def boot(settings: SupervisorSettings, slot: int) -> tuple[MongoClient[Any], Consumer]:
    """Build settings, tasks, their resources, client and consumer; raise on any boot problem."""
    from queue_worker.builtin import load_tasks
    from queue_worker.connection import owner_id
    from queue_worker.consumer import Consumer
    from queue_worker.tasks import ResourceSetup, open_resources
    from queue_worker.wakeup import for_consumer
    from supervisor.bootstrap import open_store, queue_settings

    queue = queue_settings()
    registry = load_tasks(queue)
    concurrency = settings.concurrency or queue.concurrency
    client, store = open_store(queue, f"supervisor-consumer-{slot}", pool=concurrency + 2)
    resources = open_resources(registry, ResourceSetup(env=os.environ, db=store.db))
    queues = list(settings.queues) if settings.queues else [queue.default_queue]
    consumer = Consumer(
        store,
        registry,
        queue,
        owner=owner_id(),
        queues=queues,
        concurrency=concurrency,
        stop_timeout_s=settings.graceful_timeout_s,
        resources=resources,
        max_wait_s=PASS_WAIT_S,
        wakeup=for_consumer(store.db, queues, queue),
        register=True,
    )
    return client, consumer


def run_consumer(settings: SupervisorSettings, slot: int, liveness: LivenessLink) -> int:
    """The consumer child's whole life; return its exit code."""
    faulthandler.enable()  # the master's SIGABRT of a hung child dumps every thread's stack
    flags = StopFlags()
    flags.install()
    setproctitle.setproctitle(f"supervisor: consumer slot={slot} booting")
    watch_for_outages(liveness)  # before boot: the listener must exist before the client
    try:
        client, consumer = boot(settings, slot)
    except Exception as exc:  # noqa: BLE001 - any boot error stops the master, with this message
        traceback.print_exc()
        liveness.leave_note(f"{type(exc).__name__}: {exc}")
        return ExitCode.BOOT_FAILURE
    liveness.mark_ready()
    try:
        return ConsumerLoop(consumer, settings, slot, liveness, flags).run()
    finally:
        client.close()
