"""Fair admission to the database: FifoGate and Admission's slots."""

from __future__ import annotations

import threading
import time

import pytest
from apihelpers import secret_env
from pymongo import _csot
from waiting import wait_until

from api.admission import Admission
from api.errors import Conflict, ServiceUnavailable
from api.fifo_gate import FifoGate
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from runtime.env import SettingsError

DEADLINE_S = 30.0  # a bound on a hang; a passing test never waits for it


def queue_waiters(gate: FifoGate, count: int, admitted: list[int]) -> list[threading.Thread]:
    """Start `count` threads that queue one after another, record their turn and release."""
    threads = []
    for index in range(count):

        def run(index: int = index) -> None:
            assert gate.acquire(DEADLINE_S)
            admitted.append(index)
            gate.release()

        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda index=index: gate.waiting == index + 1)  # type: ignore[misc]
        threads.append(thread)
    return threads


def test_waiters_are_admitted_in_arrival_order() -> None:
    """Callers that had to wait get their slots in exactly the order they arrived."""
    gate = FifoGate(1)
    assert gate.acquire(0)
    admitted: list[int] = []
    threads = queue_waiters(gate, 6, admitted)
    gate.release()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert admitted == [0, 1, 2, 3, 4, 5]
    assert gate.waiting == 0


def test_a_released_slot_goes_to_the_waiter_not_to_a_newcomer() -> None:
    """A slot released while someone waits is handed over: a caller arriving then cannot take it."""
    gate = FifoGate(1)
    assert gate.acquire(0)
    holding, done = threading.Event(), threading.Event()

    def waiter() -> None:
        assert gate.acquire(DEADLINE_S)
        holding.set()
        done.wait(DEADLINE_S)
        gate.release()

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: gate.waiting == 1)
    gate.release()
    # Straight after the release, before the waiter may even have run: the slot is not free.
    assert not gate.acquire(0)
    assert holding.wait(DEADLINE_S)
    done.set()
    thread.join(DEADLINE_S)
    assert gate.acquire(0)


def test_a_caller_that_gives_up_leaves_the_queue() -> None:
    """A waiter that times out is removed; the slot later goes to the next waiter."""
    gate = FifoGate(1)
    assert gate.acquire(0)
    assert not gate.acquire(0.01)
    assert gate.waiting == 0
    admitted: list[int] = []
    threads = queue_waiters(gate, 1, admitted)
    gate.release()
    threads[0].join(DEADLINE_S)
    assert admitted == [0]


def test_never_more_holders_than_slots() -> None:
    """With many concurrent callers, at most `slots` hold the gate at any moment (the safety
    claim: it holds whatever the machine's scheduling)."""
    gate = FifoGate(3)
    lock = threading.Lock()
    holders = peak = 0

    def work() -> None:
        nonlocal holders, peak
        for _ in range(50):
            assert gate.acquire(DEADLINE_S)
            with lock:
                holders += 1
                peak = max(peak, holders)
            time.sleep(0)  # let another thread in while holding
            with lock:
                holders -= 1
            gate.release()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S * 4)
    assert 1 <= peak <= 3
    assert gate.acquire(0) and gate.acquire(0) and gate.acquire(0)
    assert not gate.acquire(0)


def test_as_many_holders_as_slots_at_once() -> None:
    """Three callers hold a three-slot gate together: they meet at a barrier only three
    simultaneous holders can pass (a proof by event, not by a lucky interleaving)."""
    gate = FifoGate(3)
    together = threading.Barrier(3, timeout=DEADLINE_S)
    fourth: list[bool] = []

    def hold() -> None:
        assert gate.acquire(DEADLINE_S)
        if together.wait() == 0:
            fourth.append(gate.acquire(0))  # all three hold it now
        together.wait()
        gate.release()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert fourth == [False]
    assert gate.acquire(0)


def test_a_gate_needs_a_slot() -> None:
    """A gate of zero slots is a configuration error, not a deadlock."""
    with pytest.raises(ValueError):
        FifoGate(0)


def errors_of(metrics: ApiMetrics, operation: str) -> float:
    value = metrics.registry.get_sample_value("db_operation_errors_total", {"operation": operation})
    return value or 0.0


def test_an_operation_without_a_free_slot_in_time_is_a_counted_503() -> None:
    """Waiting longer than the guard's wait for a slot gives ServiceUnavailable and a count."""
    metrics = ApiMetrics()
    guard = Admission(metrics, max_in_flight=1, wait_s=0.01)
    with guard.operation("users.find"):
        with pytest.raises(ServiceUnavailable) as raised:
            with guard.operation("sessions.rotate"):
                pass  # pragma: no cover - never admitted
    assert raised.value.operation == "sessions.rotate"
    assert errors_of(metrics, "sessions.rotate") == 1
    with guard.operation("users.find"):
        pass  # the slot came back when the first operation ended


def test_an_error_inside_an_operation_gives_its_slot_back() -> None:
    """An exception raised inside an operation still releases its slot."""
    guard = Admission(ApiMetrics(), max_in_flight=1, wait_s=0.01)
    with pytest.raises(Conflict):
        with guard.operation("users.insert"):
            raise Conflict("taken", code="email_unavailable")
    with guard.operation("users.insert"):
        pass


def test_in_flight_limit_is_read_from_the_environment() -> None:
    """API_DB_MAX_IN_FLIGHT sets the per-worker limit; nonsense values are refused."""
    assert ApiSettings.from_env(secret_env()).db_max_in_flight == 4
    env = {**secret_env(), "API_DB_MAX_IN_FLIGHT": "16"}
    assert ApiSettings.from_env(env).db_max_in_flight == 16
    with pytest.raises(SettingsError):
        ApiSettings.from_env({**secret_env(), "API_DB_MAX_IN_FLIGHT": "0"})


def test_the_wait_for_a_slot_comes_out_of_the_operations_deadline() -> None:
    """The deadline holds end to end: an operation admitted after waiting 1.5 s of a 2 s budget
    runs under pymongo.timeout with the 0.5 s left (with a clock that moves only when told)."""
    now = [100.0]
    guard = Admission(ApiMetrics(), max_in_flight=1, wait_s=2.0, clock=lambda: now[0])
    real_acquire = guard._gate.acquire

    def slow_acquire(timeout_s: float) -> bool:
        now[0] += 1.5  # the queue for the slot took 1.5 s
        return real_acquire(timeout_s)

    guard._gate.acquire = slow_acquire  # type: ignore[method-assign]
    with guard.operation("users.find"):
        left = _csot.get_timeout()
    assert left == pytest.approx(0.5)
    with guard.operation("users.find"):
        assert _csot.get_timeout() == pytest.approx(0.5)  # each operation its own budget
