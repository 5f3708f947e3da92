"""The master: a single-threaded pre-fork loop that keeps N consumers and its singletons alive.

`Master.tick()` does one pass: dispatch recorded signals, reap exited children, check liveness
and deadlines, spawn or retire children to match the desired count, update gauges. `run()` is a
short loop around it that sleeps in `select` on a self-pipe the signal handlers write to.

Singletons are extra children of which exactly one runs per supervisor, each by name
(`SupervisorSettings.singletons()`: the metrics exporter when a port is set, the scheduler):
supervised like consumers (respawned with backoff, a boot failure stops the master), replaced
on HUP, stopped fast, and never reaped for jobs (they hold none).

The master holds no database connection. When a consumer dies abnormally it forks a short-lived
reaper child that connects, releases the dead consumer's jobs with the crash recorded, and exits.
Every OS call goes through `ProcessOps` so unit tests drive `tick()` with fakes.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from supervisor import metrics
from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.places import Respawn, Singleton, Slot
from supervisor.process_ops import ChildTargets, ProcessOps
from supervisor.reasons import (
    EXIT_CODE_RESTARTS,
    ChildExit,
    DeathCause,
    RestartReason,
    Retiring,
    StopMode,
)
from supervisor.settings import SupervisorSettings
from supervisor.signal_pipe import SignalPipe
from supervisor.spawner import HANDLED_SIGNALS, ChildProc, Kind, Spawner

log = logging.getLogger("supervisor.master")

TICK_INTERVAL_S = 0.2
REAPER_TIMEOUT_S = 60.0


class Master:
    """Keep `desired` consumers alive; act on signals; stop with an exit code."""

    def __init__(
        self,
        settings: SupervisorSettings,
        ops: ProcessOps,
        targets: ChildTargets,
        liveness_factory: Callable[[], LivenessLink],
    ) -> None:
        self.settings = settings
        self.ops = ops
        self.spawner = Spawner(ops, targets, liveness_factory)
        self.children = self.spawner.children
        self.desired = settings.workers
        self.slots: dict[int, Slot] = {}
        self.singletons = {name: Singleton(name=name) for name in settings.singletons()}
        self.pending_signals: list[int] = []
        self.stopping: StopMode | None = None
        self.exit_code: int = ExitCode.OK
        self.failure: str | None = None
        self._title = ""
        for reason in RestartReason:
            metrics.RESTARTS.labels(reason.value)  # export every reason from the start, at 0

    # One pass ------------------------------------------------------------------------------
    def tick(self) -> int | None:
        """Do one pass of the loop; return the exit code once everything has stopped."""
        now = self.ops.monotonic()
        self.dispatch_signals(now)
        self.reap(now)
        self.check_children(now)
        if self.stopping is None:
            self.spawn_to_desired(now)
        self.update_gauges()
        if self.stopping is not None and not self.children:
            return int(self.exit_code)
        return None

    def record_signal(self, signum: int) -> None:
        """Queue a signal for the next pass (the signal pipe calls this from its handler)."""
        self.pending_signals.append(signum)

    def dispatch_signals(self, now: float) -> None:
        """Call handle_<signal> for each recorded signal, in order."""
        while self.pending_signals:
            signum = self.pending_signals.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            handler: Callable[[float], None] | None = getattr(self, f"handle_{name}", None)
            if handler is not None:
                handler(now)

    # Signal handlers (called from the loop, never from signal context) ----------------------
    def handle_term(self, now: float) -> None:
        log.info(
            "SIGTERM: draining consumers (graceful timeout %ss)", self.settings.graceful_timeout_s
        )
        self.begin_stop(StopMode.GRACEFUL, now)

    def handle_int(self, now: float) -> None:
        log.info("SIGINT: draining consumers")
        self.begin_stop(StopMode.GRACEFUL, now)

    def handle_quit(self, now: float) -> None:
        log.info("SIGQUIT: stopping fast, releasing every held job")
        self.begin_stop(StopMode.FAST, now)

    def handle_hup(self, now: float) -> None:
        """Replace every consumer: successors first, each predecessor stops once it is ready.
        Singletons are stopped and started afresh (exactly one of each may run)."""
        if self.stopping is not None:
            return
        log.info("SIGHUP: replacing all consumers")
        for slot in self.slots.values():
            slot.reset()
            if slot.pid is not None:
                self.children[slot.pid].retiring = Retiring.RELOAD
                metrics.RESTARTS.labels(RestartReason.RELOAD.value).inc()
                slot.pid = None
        for singleton in self.singletons.values():
            singleton.reset()
        for child in self._of_kind(Kind.SINGLETON):
            self.stop_child(child, Retiring.RELOAD, now)

    def handle_ttin(self, now: float) -> None:
        self.desired += 1
        log.info("SIGTTIN: %d consumers wanted", self.desired)

    def handle_ttou(self, now: float) -> None:
        self.desired = max(1, self.desired - 1)
        log.info("SIGTTOU: %d consumers wanted", self.desired)

    def handle_chld(self, now: float) -> None:
        """Nothing: every tick reaps, the signal only wakes the loop."""

    # Stopping -------------------------------------------------------------------------------
    def begin_stop(self, mode: StopMode, now: float) -> None:
        """Ask every consumer and singleton to stop (TERM to drain, QUIT to release now)."""
        if self.stopping is StopMode.FAST or self.stopping is mode:
            return
        self.stopping = mode
        for child in list(self.children.values()):
            if child.kind is not Kind.REAPER and not child.hung:  # hung ones are being killed
                child.signalled = False
                self.stop_child(child, Retiring.SHUTDOWN, now, fast=mode is StopMode.FAST)

    def fail(self, code: ExitCode, message: str, now: float) -> None:
        """Stop everything because the pool cannot run; exit with `code`."""
        if self.failure is None:
            self.failure = message
            self.exit_code = code
            log.critical("%s; stopping", message)
        self.begin_stop(StopMode.GRACEFUL, now)

    def stop_child(
        self, child: ChildProc, reason: Retiring, now: float, fast: bool = False
    ) -> None:
        """Send a child its stop signal once and set the deadline after which it is killed."""
        child.retiring = child.retiring or reason
        if child.signalled:
            return
        child.signalled = True
        fast = fast or child.kind is Kind.SINGLETON
        grace = self.settings.kill_grace_s
        if not fast:
            grace += self.settings.graceful_timeout_s
        child.stop_deadline = now + grace
        self.ops.kill(child.pid, signal.SIGQUIT if fast else signal.SIGTERM)

    # Reaping --------------------------------------------------------------------------------
    def reap(self, now: float) -> None:
        """Collect every exited child and decide what its exit means."""
        while (result := self.ops.reap()) is not None:
            pid, status = result
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.ops.mark_dead(pid)
            note = child.liveness.note() if child.liveness is not None else ""
            if child.liveness is not None:
                child.liveness.close()
            dead = ChildExit(pid, status, DeathCause.HANG if child.hung else DeathCause.CRASH)
            if child.kind is Kind.CONSUMER:
                self.on_consumer_exit(child, dead, note, now)
            elif child.kind is Kind.SINGLETON:
                self.on_singleton_exit(child, dead, note, now)
            elif dead.exit_code != 0:
                log.error(
                    "reaper for pid %s ended with %s: that child's jobs wait for lease "
                    "expiry instead",
                    child.releases_for,
                    dead.describe(),
                )

    def on_consumer_exit(self, child: ChildProc, dead: ChildExit, note: str, now: float) -> None:
        """Account for a consumer's exit: release its jobs if it crashed, plan its respawn."""
        slot = self.slots.get(child.slot) if child.slot is not None else None
        if slot is not None and slot.pid == child.pid:
            slot.pid = None
        if dead.exit_code == ExitCode.BOOT_FAILURE:
            self.fail(
                ExitCode.BOOT_FAILURE,
                f"consumer slot {child.slot} failed to boot: {note or 'see its error above'}",
                now,
            )
            return
        if dead.exit_code in EXIT_CODE_RESTARTS:
            reason = EXIT_CODE_RESTARTS[dead.exit_code]
            log.info("consumer slot %s (pid %d) replaced: %s", child.slot, child.pid, reason)
            metrics.RESTARTS.labels(reason.value).inc()
            return
        if child.retiring is not None and self._stopped_as_asked(child, dead):
            if dead.exit_code != 0:
                # Release whatever it held, without blaming the jobs.
                dead.cause = DeathCause.SHUTDOWN
                self.spawn_reaper(dead, now)
            return
        log.warning(
            "consumer slot %s (pid %d) died: %s (%s)",
            child.slot,
            child.pid,
            dead.describe(),
            dead.cause,
        )
        self.spawn_reaper(dead, now)
        if child.retiring is None:
            metrics.RESTARTS.labels(RestartReason(dead.cause.value).value).inc()
        if slot is not None and child.retiring is None and self.stopping is None:
            self.count_abnormal_exit(slot, now)

    @staticmethod
    def _stopped_as_asked(child: ChildProc, dead: ChildExit) -> bool:
        """Exit 0, our stop signal before its handler was installed, or our deadline SIGKILL."""
        if dead.exit_code == 0 or (child.killed and not child.hung):
            return True
        return dead.signal in (signal.SIGTERM, signal.SIGQUIT)

    def count_abnormal_exit(self, slot: Slot, now: float) -> None:
        """Back off the slot's respawn; stop the master if every slot now crash-loops."""
        s = self.settings
        self._record_abnormal_exit(slot, now)
        if not slot.crash_looping:
            return
        log.error(
            "consumer slot %d crash-looped (%d abnormal exits within %ss): not respawning "
            "it until SIGHUP",
            slot.index,
            s.crash_loop_exits,
            s.crash_loop_window_s,
        )
        active = [self.slots[i] for i in range(self.desired) if i in self.slots]
        if len(active) == self.desired and all(x.crash_looping for x in active):
            self.fail(ExitCode.CRASH_LOOP, "every consumer slot is crash-looping", now)

    def on_singleton_exit(self, child: ChildProc, dead: ChildExit, note: str, now: float) -> None:
        """Respawn a singleton after a crash (backed off); a boot failure stops the master."""
        assert child.singleton is not None
        singleton = self.singletons[child.singleton]
        if singleton.pid == child.pid:
            singleton.pid = None
        if dead.exit_code == ExitCode.BOOT_FAILURE:
            self.fail(
                ExitCode.BOOT_FAILURE,
                f"{child.singleton} failed to boot: {note or 'see its error above'}",
                now,
            )
        elif child.retiring is None and self.stopping is None:
            log.warning("%s (pid %d) died: %s", child.singleton, child.pid, dead.describe())
            self._record_abnormal_exit(singleton, now)
            if singleton.crash_looping:
                log.error("%s crash-looped: not respawning it until SIGHUP", child.singleton)

    def _record_abnormal_exit(self, place: Respawn, now: float) -> None:
        s = self.settings
        place.record_abnormal_exit(
            now,
            window_s=s.crash_loop_window_s,
            limit=s.crash_loop_exits,
            base_s=s.backoff_base_s,
            cap_s=s.backoff_cap_s,
        )

    # Liveness and deadlines -----------------------------------------------------------------
    def check_children(self, now: float) -> None:
        """Kill children past their deadline, abort stale ones, retire reloaded predecessors."""
        wall = self.ops.time()
        for child in list(self.children.values()):
            if child.stop_deadline is not None and now >= child.stop_deadline:
                if not child.killed:
                    log.warning(
                        "%s pid %d missed its deadline: SIGKILL", child.kind.value, child.pid
                    )
                    child.killed = True
                    self.ops.kill(child.pid, signal.SIGKILL)
                continue
            if child.liveness is None or child.stop_deadline is not None:
                continue
            if not child.ready and child.liveness.is_ready():
                child.ready = True
                self.on_ready(child, now)
            if child.ready:
                stale = wall - child.liveness.last_report() > self.settings.hang_timeout_s
            else:
                stale = now - child.started_at > self.settings.boot_timeout_s
            if stale:
                self.abort_hung(child, now)

    def abort_hung(self, child: ChildProc, now: float) -> None:
        """SIGABRT a child that stopped reporting (faulthandler dumps its stacks); kill later."""
        log.error(
            "%s slot %s (pid %d) stopped reporting liveness: SIGABRT",
            child.kind.value,
            child.slot,
            child.pid,
        )
        child.hung = True
        child.stop_deadline = now + self.settings.kill_grace_s
        self.ops.kill(child.pid, signal.SIGABRT)

    def on_ready(self, child: ChildProc, now: float) -> None:
        """A reloaded slot's successor is up: now stop its predecessors."""
        for old in self._of_kind(Kind.CONSUMER):
            reloaded = old.retiring is Retiring.RELOAD
            if old.slot == child.slot and reloaded and not old.signalled:
                self.stop_child(old, Retiring.RELOAD, now)

    # Spawning -------------------------------------------------------------------------------
    def spawn_to_desired(self, now: float) -> None:
        """Fill empty slots below `desired`, retire slots above it, keep the singletons up."""
        for index in range(self.desired):
            slot = self.slots.setdefault(index, Slot(index=index))
            if slot.pid is None and not slot.crash_looping and now >= slot.next_spawn_at:
                self.spawn_consumer(slot, now)
        for index in [i for i in self.slots if i >= self.desired]:
            slot = self.slots.pop(index)
            if slot.pid is not None:
                metrics.RESTARTS.labels(RestartReason.SCALE.value).inc()
                self.stop_child(self.children[slot.pid], Retiring.SCALE, now)
            self._retire_reloaded(index, now)
        for singleton in self.singletons.values():
            # Its pid stays set until it is reaped, so two never run at once (HUP included).
            due = singleton.pid is None and now >= singleton.next_spawn_at
            if due and not singleton.crash_looping:
                singleton.pid = self.spawner.singleton(singleton.name, now)

    def _retire_reloaded(self, index: int, now: float) -> None:
        for old in self._of_kind(Kind.CONSUMER):
            if old.slot == index and not old.signalled:
                self.stop_child(old, Retiring.SCALE, now)

    def spawn_consumer(self, slot: Slot, now: float) -> None:
        slot.pid = self.spawner.consumer(slot.index, now)
        if slot.pid is None:
            slot.next_spawn_at = now + self.settings.backoff_base_s

    def spawn_reaper(self, dead: ChildExit, now: float) -> None:
        """Fork a short-lived child that releases `dead`'s jobs from the database."""
        self.spawner.reaper(dead, now, REAPER_TIMEOUT_S)

    def _of_kind(self, kind: Kind) -> list[ChildProc]:
        return [c for c in self.children.values() if c.kind is kind]

    def update_gauges(self) -> None:
        """Publish alive/desired/crash-looping counts and refresh the process title."""
        alive = sum(1 for s in self.slots.values() if s.pid is not None)
        looping = sum(1 for s in self.slots.values() if s.crash_looping)
        metrics.CONSUMERS_ALIVE.set(alive)
        metrics.CONSUMERS_DESIRED.set(self.desired)
        metrics.CRASH_LOOPING_SLOTS.set(looping)
        title = f"supervisor: master [{self.desired} workers]"
        if self.stopping:
            title += " stopping"
        if title != self._title:
            self._title = title
            self.ops.set_title(title)

    # The loop -------------------------------------------------------------------------------
    def run(self) -> int:
        """Install signal handlers and tick until every child has stopped; return the code."""
        with SignalPipe(HANDLED_SIGNALS, self.record_signal) as pipe:
            self.spawner.close_in_child = pipe.fds
            try:
                while (code := self.tick()) is None:
                    pipe.wait(TICK_INTERVAL_S)
                return code
            finally:
                self.spawner.close_in_child = []
