"""Admission to the database: fair, bounded, and driver failures as a fast 503.

Data access in `api` (users, sessions, rate limits) and calls into `queue_worker` run inside
`admission.operation(name)`. Each operation first takes a slot of the worker's `FifoGate`: at most
`max_in_flight` operations per worker are at the database at once and the rest wait in arrival
order (see api/fifo_gate.py for why: without it the p99 latency under load is many times the
median).
A caller that cannot get a slot within `wait_s`, or whose operation raises a PyMongoError
(timeout, lost connection, server error), is counted in db_operation_errors_total{operation}
and gets ServiceUnavailable, never a 500. The deadline holds end to end: the operation runs
under `pymongo.timeout` with whatever the wait for a slot left of `wait_s`. Expected driver
outcomes (DuplicateKeyError) are handled inside, before they reach admission. Operations never
nest, so a holder never waits for a second slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pymongo
from pymongo.errors import PyMongoError

from api.errors import ServiceUnavailable
from api.fifo_gate import FifoGate
from api.metrics import ApiMetrics

log = logging.getLogger("api.database")
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_WAIT_S = 2.0
MIN_OPERATION_S = 0.001  # a slot handed over at the deadline still gets to fail fast, not hang


class Admission:
    """Admit database operations in arrival order; map driver failures to counted 503s."""

    def __init__(
        self,
        metrics: ApiMetrics,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        wait_s: float = DEFAULT_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._errors = metrics.db_operation_errors
        self._gate = FifoGate(max_in_flight)
        self._wait_s = wait_s
        self._clock = clock

    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Run the block as database operation `name` within one deadline of `wait_s`, the wait
        for a slot included; map driver failures (a deadline passed, too) to 503."""
        started = self._clock()
        if not self._gate.acquire(self._wait_s):
            self._errors.labels(name).inc()
            log.warning("database operation %s found no free slot in time", name)
            raise ServiceUnavailable(operation=name)
        # What the wait for a slot used up is gone: the operation gets only the rest, so a
        # caller hears 503 within one deadline, not a wait plus a full operation timeout.
        left_s = max(MIN_OPERATION_S, self._wait_s - (self._clock() - started))
        try:
            with pymongo.timeout(left_s):
                yield
        except PyMongoError as exc:
            self._errors.labels(name).inc()
            # The class name is enough to diagnose; driver messages may echo query values.
            log.warning("database operation %s failed: %s", name, type(exc).__name__)
            raise ServiceUnavailable(operation=name) from exc
        finally:
            self._gate.release()
