"""A consumer slot: a numbered place the master keeps one consumer in, with its respawn policy.

A slot remembers when its consumers died abnormally. The next respawn waits an exponential,
jittered delay (so a failing dependency is not hammered in lock-step by every slot), and K
abnormal exits within T seconds mark the slot as crash-looping: it is not respawned again until
the operator reloads (HUP) or restarts the supervisor.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Slot:
    """One consumer place: the pid occupying it and its recent abnormal exits."""

    index: int
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
        """Count an abnormal exit: schedule a backed-off respawn or mark the slot crash-looping."""
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
        """Forget past exits (an operator reload gives crash-looping slots a fresh start)."""
        self.exits.clear()
        self.crash_looping = False
        self.next_spawn_at = 0.0
