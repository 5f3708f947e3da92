"""Under gevent: notifying a Condition must not hand the CPU to other greenlets, and requests
that never block must still take turns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Runs in a fresh interpreter: monkey-patching must never leak into the test process.
SCRIPT = """
from gevent import monkey
monkey.patch_all()
import threading
import gevent

def others_ran_during_notify():
    ran = []
    gevent.spawn(ran.append, 1)
    condition = threading.Condition(threading.Lock())
    with condition:
        condition.notify()
        during = bool(ran)
    gevent.sleep(0)
    assert ran, "the other greenlet never ran"
    return during

before = others_ran_during_notify()
from api.gevent_compat import quiet_condition_ownership_checks
applied = quiet_condition_ownership_checks()
after = others_ran_during_notify()
rlock_condition = threading.Condition(threading.RLock())
print(before, applied, after, rlock_condition._is_owned())
"""


def test_notify_no_longer_yields_while_holding_the_lock_under_gevent() -> None:
    """Without the correction notify() lets other greenlets run mid-lock; with it, it does not."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False", "False"]


def test_the_correction_is_not_applied_without_gevent_patching() -> None:
    """In a process whose threading is not patched, Condition is left as it is."""
    script = (
        "import threading; from api.gevent_compat import quiet_condition_ownership_checks as q\n"
        "before = threading.Condition._is_owned\n"
        "print(q(), threading.Condition._is_owned is before)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


TURNS = """
from gevent import monkey
monkey.patch_all()
import gevent
from api.middleware import TurnTakingMiddleware

order = []

def connection(name, middleware):
    for _ in range(3):  # three requests served from memory: nothing blocks
        if middleware is not None:
            middleware.process_request(None, None)
        order.append(name)

for middleware in (None, TurnTakingMiddleware()):
    order.clear()
    gevent.joinall([gevent.spawn(connection, n, middleware) for n in "ab"])
    print("".join(order))
"""


def test_requests_that_never_block_take_turns_under_gevent() -> None:
    """Without the turn-taking middleware one greenlet's requests all run before the other's;
    with it they alternate (the p99 of database-free routes under load depends on this)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", TURNS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["aaabbb", "ababab"]
