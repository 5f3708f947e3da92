"""The one deadline poll of the suite: wait for a condition, never for a time.

`wait_until` polls a predicate until it returns something truthy (and returns it). Its timeout
is a bound on a hang, not a prediction: generous on purpose, because machines differ by 3x from
one day to the next, and a passing test never waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60.0


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "",
    *,
    interval_s: float = 0.01,
) -> T:
    """Poll `predicate` until it returns something truthy and return that; fail the test with
    `what` after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)
