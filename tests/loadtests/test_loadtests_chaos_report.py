"""How a chaos run is judged from final job documents and execution records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chaos_report import Kill, judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"_id": job_id, "state": state, "run_at": T0, **extra}


def run(job_id: str, pid: int, at_s: float) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease_token": f"t{at_s}",
        "pid": pid,
        "at": T0 + timedelta(seconds=at_s),
    }


def test_unfinished_or_missing_jobs_are_lost() -> None:
    """A job still pending or running, or absent, at the end counts as lost."""
    docs = [job("a", "succeeded"), job("b", "pending"), job("c", "running")]
    verdict = judge(docs, ["a", "b", "c", "d"], None, [run("a", 1, 0.1)], [], {})
    assert (verdict.lost, verdict.completed) == (3, 1)
    assert not verdict.ok()


def test_a_dead_ordinary_job_is_unexpected_and_the_poison_job_must_be_dead_as_poison() -> None:
    """Only the poison job may end dead, and only with reason poison."""
    docs = [job("a", "dead", dead_reason="exhausted"), job("p", "dead", dead_reason="poison")]
    verdict = judge(docs, ["a", "p"], "p", [], [], {})
    assert verdict.lost == 0 and len(verdict.unexpected) == 1
    assert verdict.poison_state == "dead:poison"
    succeeded_poison = judge([job("p", "succeeded")], ["p"], "p", [], [], {})
    assert succeeded_poison.unexpected and not succeeded_poison.ok()


def test_a_job_buried_because_the_killer_hit_every_run_is_counted_apart() -> None:
    """Dead as poison with every run in a process the killer SIGKILLed: counted, not unexpected;
    one run in a process that died otherwise keeps it unexpected."""
    kills = [Kill(T0 + timedelta(seconds=s), pid) for s, pid in ((1, 11), (2, 12), (3, 13))]
    runs = [run("a", 11, 0.9), run("a", 12, 1.9), run("a", 13, 2.9)]
    a = job("a", "dead", dead_reason="poison", crashes=3)
    verdict = judge([a], ["a"], None, runs, kills, {"a": 100})
    assert verdict.ok() and verdict.buried_by_killer == 1
    runs[1] = run("a", 99, 1.9)
    verdict = judge([a], ["a"], None, runs, kills, {"a": 100})
    assert not verdict.ok() and verdict.buried_by_killer == 0


def test_duplicates_are_counted_per_cause_and_rescue_wait_starts_at_the_kill() -> None:
    """A re-run after a kill counts as a duplicate; its wait runs from the kill to the re-run."""
    docs = [job("a", "succeeded"), job("b", "succeeded"), job("p", "dead", dead_reason="poison")]
    runs = [
        run("a", 10, 1.0), run("a", 11, 4.0),  # pid 10 killed at 2.5 s: waited 1.5 s
        run("p", 20, 1.0), run("b", 20, 1.0), run("b", 21, 2.0),  # shared the poison's process
    ]  # fmt: skip
    kills = [Kill(T0 + timedelta(seconds=2.5), 10)]
    verdict = judge(docs, ["a", "b", "p"], "p", runs, kills, {"a": 100, "b": 100})
    assert (verdict.duplicates, verdict.duplicates_after_kill) == (2, 1)
    assert verdict.duplicates_after_poison == 1
    assert verdict.max_rescue_wait_s == 1.5
    assert verdict.rescued_jobs == 2
    assert verdict.ok()


def test_pickup_is_measured_from_due_time_to_the_first_execution() -> None:
    """Pickup latency is first execution minus run_at, re-runs left out."""
    docs = [job("a", "succeeded"), job("b", "succeeded")]
    runs = [run("a", 1, 0.010), run("b", 1, 0.030), run("b", 2, 5.0)]
    verdict = judge(docs, ["a", "b"], None, runs, [], {})
    assert verdict.pickup_p50_ms == 10.0
    assert verdict.pickup_p99_ms == 30.0
