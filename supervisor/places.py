"""The places the master keeps children in, each with its respawn policy.

Respawn    the policy: an exponential, jittered delay before the next start after an
           abnormal exit (so a failing dependency is not hammered in lock-step), and
           crash-looping after K abnormal exits within T seconds: no respawn until the
           operator reloads (HUP) or restarts the supervisor
Slot       a numbered consumer place (0 .. desired-1)
Singleton  a named extra child of which exactly one runs beside the consumers (the metrics
           exporter; the scheduler)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Respawn:
    """The pid occupying a place and its recent abnormal exits."""

    pid: int | None = None
    exits: deque[float] = field(default_factory=deque)  # monotonic times of abnormal exits
    next_spawn_at: float = 0.0
    crash_looping: bool = False

    def record_abnormal_exit(
        self,
        now: float,
        *,
        window_s: float,
        limit: int,
        base_s: float,
        cap_s: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Count an abnormal exit: schedule a backed-off respawn or mark the place crash-looping."""
        self.exits.append(now)
        while self.exits and self.exits[0] < now - window_s:
            self.exits.popleft()
        if len(self.exits) >= limit:
            self.crash_looping = True
            return
        delay = min(cap_s, base_s * 2 ** (len(self.exits) - 1))
        # Half fixed, half random ("equal jitter"): never immediate, never synchronised.
        self.next_spawn_at = now + delay * (0.5 + 0.5 * jitter())

    def reset(self) -> None:
        """Forget past exits (an operator reload gives crash-looping places a fresh start)."""
        self.exits.clear()
        self.crash_looping = False
        self.next_spawn_at = 0.0


@dataclass(kw_only=True)
class Slot(Respawn):
    """One consumer place."""

    index: int


@dataclass(kw_only=True)
class Singleton(Respawn):
    """One named extra child (exactly one runs per supervisor)."""

    name: str
