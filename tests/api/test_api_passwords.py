"""Password hashing: peppered pre-hash, no truncation, comparable timing, thread pools."""

from __future__ import annotations

import os
import secrets
import statistics
import threading
import time

import bcrypt
import pytest

from api.auth.passwords import (
    HashPool,
    PasswordHasher,
    check_policy,
    common_passwords,
)
from api.errors import ValidationFailed
from api.metrics import ApiMetrics


@pytest.fixture
def hasher() -> PasswordHasher:
    metrics = ApiMetrics()
    return PasswordHasher(secrets.token_bytes(32), 4, HashPool(2, metrics), metrics)


def test_long_passwords_differing_after_72_bytes_do_not_match(hasher: PasswordHasher) -> None:
    """bcrypt alone would ignore everything past byte 72; the pre-hash keeps it significant."""
    stored = hasher.hash("a" * 100 + "1")
    assert hasher.verify("a" * 100 + "1", stored)
    assert not hasher.verify("a" * 100 + "2", stored)


def test_the_stored_hash_depends_on_the_pepper(hasher: PasswordHasher) -> None:
    """Without the pepper, the stored hash does not verify the plain password."""
    stored = hasher.hash("correct horse battery staple")
    assert not bcrypt.checkpw(b"correct horse battery staple", stored.encode())
    other = PasswordHasher(secrets.token_bytes(32), 4, HashPool(1, ApiMetrics()), ApiMetrics())
    assert not other.verify("correct horse battery staple", stored)


def test_nul_characters_and_non_ascii_passwords_work(hasher: PasswordHasher) -> None:
    """Passwords with NUL or multi-byte characters hash and verify (no bcrypt NUL errors)."""
    for password in [
        "pass\x00word-x",
        "\u00e9\u00e8\u00ea\u00eb\u00e9\u00e8\u00ea\u00eb",
        "\U0001f600" * 20,
    ]:
        assert hasher.verify(password, hasher.hash(password))


def test_policy_bounds_and_common_list() -> None:
    """8-128 characters pass unless the password is on the shipped list (case-insensitive)."""
    assert len(common_passwords()) > 10000
    check_policy("x" * 8 + "Q7!")
    check_policy("q" * 128)
    for bad in ["1234567", "q" * 129, "iloveyou", "PASSWORD1"]:
        with pytest.raises(ValidationFailed):
            check_policy(bad)


def test_unknown_account_checks_take_as_long_as_wrong_passwords() -> None:
    """Verifying against no account costs a bcrypt check like a wrong password (cost 8)."""
    metrics = ApiMetrics()
    hasher = PasswordHasher(secrets.token_bytes(32), 8, HashPool(1, metrics), metrics)
    stored = hasher.hash("the-real-password")
    hasher.verify("warm-up", None)  # the dummy hash is made once, on first use

    def timed(stored_hash: str | None) -> float:
        started = time.perf_counter()
        assert not hasher.verify("a-wrong-password", stored_hash)
        return time.perf_counter() - started

    wrong = statistics.median(timed(stored) for _ in range(5))
    unknown = statistics.median(timed(None) for _ in range(5))
    assert 0.5 < unknown / wrong < 2.0


def test_the_pool_never_runs_more_hashes_than_its_size() -> None:
    """With 2 threads, at most 2 hashes run at once, whatever the number of callers."""
    metrics = ApiMetrics()
    pool = HashPool(2, metrics)
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        bcrypt.hashpw(b"x", bcrypt.gensalt(6))
        with lock:
            running -= 1

    callers = [threading.Thread(target=pool.run, args=(work,)) for _ in range(8)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=60)
    pool.close()
    assert 1 <= peak <= 2
    assert metrics.registry.get_sample_value("auth_bcrypt_queue_length") == 0


def test_hashing_threads_run_at_lower_cpu_priority_than_requests() -> None:
    """Pool work runs niced (requests win the CPU during a login storm); the caller is not."""
    pool = HashPool(1, ApiMetrics(), niceness=10)
    try:
        caller_nice = os.getpriority(os.PRIO_PROCESS, 0)
        worker_nice = pool.run(lambda: os.getpriority(os.PRIO_PROCESS, 0))
        assert worker_nice >= 10 > caller_nice
        assert os.getpriority(os.PRIO_PROCESS, 0) == caller_nice
    finally:
        pool.close()
