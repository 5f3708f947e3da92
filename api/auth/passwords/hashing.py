"""Password hashing: a peppered HMAC pre-hash, then bcrypt in a bounded thread pool (the policy a
new password must meet is in password_policy.py).

Every password is first reduced to base64(HMAC-SHA256(pepper, utf-8 password)) — 44 ASCII bytes
with no NUL — and that is what bcrypt hashes. So passwords longer than bcrypt's 72-byte limit are
neither truncated nor an error (OWASP "pre-hashing" with a pepper), and a stolen database alone
is not enough to start guessing. bcrypt runs in a thread pool sized to the cores, so hashing
never blocks gevent's event loop; without gevent (tests, scripts) a plain thread pool is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import bcrypt

from api.metrics import ApiMetrics

T = TypeVar("T")


def _at_niceness(niceness: int, work: Callable[[], T]) -> T:
    """Run `work` after lowering this OS thread's CPU priority (on Linux nice is per thread)."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError:  # not permitted or not supported here: hashing still works, just unniced
        pass
    return work()


class HashPool:
    """Run blocking hash work on at most `threads` OS threads, off the event loop."""

    def __init__(self, threads: int, metrics: ApiMetrics, *, niceness: int = 10) -> None:
        self._threads = threads
        # Hashing threads yield the CPU to request handling (and a local database) when both
        # want it, so cheap requests stay fast during a login storm; logins still use every
        # idle cycle. The price: under CPU saturation by other requests, logins slow down most.
        self._niceness = niceness
        self._metrics = metrics
        self._lock = threading.Lock()
        self._run: Callable[[Callable[[], Any]], Any] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` in the pool and return its result; only the calling greenlet waits."""
        gauge = self._metrics.bcrypt_queue_length
        gauge.inc()
        try:
            result: T = self._runner()(lambda: _at_niceness(self._niceness, work))
            return result
        finally:
            gauge.dec()

    def close(self) -> None:
        """Stop the plain thread pool, if one was started."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _runner(self) -> Callable[[Callable[[], Any]], Any]:
        # Created on first use: after gunicorn's fork and gevent's monkey-patching.
        if self._run is None:
            with self._lock:
                if self._run is None:
                    self._run = self._make_runner()
        return self._run

    def _make_runner(self) -> Callable[[Callable[[], Any]], Any]:
        from gevent import monkey  # type: ignore[import-untyped]

        if monkey.is_module_patched("threading"):
            from gevent.threadpool import ThreadPool  # type: ignore[import-untyped]

            gevent_pool = ThreadPool(self._threads)
            return lambda work: gevent_pool.apply(work)
        executor = ThreadPoolExecutor(self._threads, thread_name_prefix="bcrypt")
        self._executor = executor
        return lambda work: executor.submit(work).result()


class PasswordHasher:
    """Hash and check passwords (bcrypt of a peppered HMAC), with timing that hides misses."""

    def __init__(self, pepper: bytes, cost: int, pool: HashPool, metrics: ApiMetrics) -> None:
        self._pepper = pepper
        self._cost = cost
        self._pool = pool
        self._metrics = metrics
        self._dummy: bytes | None = None

    def hash(self, password: str) -> str:
        """Return the bcrypt hash (as text) of the peppered pre-hash of `password`."""
        prehashed = self._prehash(password)
        salt = bcrypt.gensalt(self._cost)
        return self._timed(lambda: bcrypt.hashpw(prehashed, salt)).decode("ascii")

    def verify(self, password: str, stored_hash: str | None) -> bool:
        """Return whether `password` matches; with no stored hash, spend the same time, False."""
        prehashed = self._prehash(password)
        if stored_hash is None:
            # Unknown account: check against a dummy hash so timing matches a wrong password.
            dummy = self._dummy_hash()
            self._timed(lambda: bcrypt.checkpw(prehashed, dummy))
            return False
        expected = stored_hash.encode("ascii")
        return bool(self._timed(lambda: bcrypt.checkpw(prehashed, expected)))

    def _prehash(self, password: str) -> bytes:
        digest = hmac.new(self._pepper, password.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest)

    def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            salt = bcrypt.gensalt(self._cost)
            self._dummy = self._timed(lambda: bcrypt.hashpw(b"no-such-account", salt))
        return self._dummy

    def _timed(self, work: Callable[[], T]) -> T:
        def measured() -> tuple[T, float]:
            # Only pure computation runs in the OS thread: gevent-patched locks (as used by
            # prometheus_client) must not be touched outside the hub's thread.
            started = time.perf_counter()
            result = work()
            return result, time.perf_counter() - started

        result, elapsed_s = self._pool.run(measured)
        self._metrics.bcrypt_seconds.observe(elapsed_s)
        return result
