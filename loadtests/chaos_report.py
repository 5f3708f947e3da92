"""Judge a chaos run from what the database holds at the end: job states and `bench_runs`.

Every recorded benchmark job inserts one `bench_runs` document per execution (job id, lease
token, pid, time) before it does its work, so executions beyond one per job are duplicates. A
job is *lost* if it is not finished when the run ends (missing, pending or running); it is
*unexpected* if it finished in a state other than the one it must reach (succeeded, or dead as
poison for the one job that kills its worker). One exception is counted apart: a job buried as
poison because the run's own killer SIGKILLed the process of every one of its executions. To the
queue that is exactly a poison job (its process died under it QUEUE_POISON_CRASHES times), and
with a kill every second it happens by chance (a suspect job starts alone on a freshly booted
consumer, about one kill period after the last kill).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness import percentile


@dataclass(frozen=True)
class Kill:
    """One SIGKILL the run sent to a consumer: when (UTC) and which pid."""

    at: datetime
    pid: int


@dataclass(frozen=True)
class Execution:
    """One recorded execution of a job, as the task wrote it to `bench_runs`."""

    job_id: str
    lease_token: str
    pid: int
    at: datetime

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Execution:
        return cls(str(doc["job_id"]), str(doc.get("lease_token")), int(doc["pid"]), doc["at"])


@dataclass
class Verdict:
    """What the run proved, ready to print and to dump as JSON."""

    jobs: int
    completed: int
    lost: int
    unexpected: list[str]
    buried_by_killer: int
    states: dict[str, int]
    duplicates: int
    duplicates_after_kill: int
    duplicates_after_poison: int
    unrecorded: int
    poison_state: str
    poison_crashes: int
    rescued_jobs: int
    max_rescue_wait_s: float
    rescue_wait_p50_s: float
    pickup_p50_ms: float
    pickup_p99_ms: float

    def ok(self) -> bool:
        return self.lost == 0 and not self.unexpected


def judge(
    jobs: Sequence[Mapping[str, Any]],
    expected_ids: Sequence[str],
    poison_id: str | None,
    runs: Iterable[Mapping[str, Any]],
    kills: Sequence[Kill],
    durations_ms: Mapping[str, float],
) -> Verdict:
    """Compare the final job documents and execution records with what was enqueued."""
    by_id = {str(doc["_id"]): doc for doc in jobs}
    executions: dict[str, list[Execution]] = defaultdict(list)
    for run_doc in runs:
        run = Execution.from_doc(run_doc)
        executions[run.job_id].append(run)
    for runs_of_job in executions.values():
        runs_of_job.sort(key=lambda r: r.at)

    killed_pids = {kill.pid for kill in kills}
    states: Counter[str] = Counter()
    lost = 0
    unexpected: list[str] = []
    buried_by_killer = 0
    completed = 0
    for job_id in expected_ids:
        doc = by_id.get(job_id)
        state = str(doc["state"]) if doc else "missing"
        states[state] += 1
        if state in ("missing", "pending", "running"):
            lost += 1
        elif job_id == poison_id:
            if state != "dead" or doc is None or doc.get("dead_reason") != "poison":
                unexpected.append(f"poison job {job_id} ended {state}")
        elif state == "succeeded":
            completed += 1
        elif _killed_into_poison(doc, executions.get(job_id, []), killed_pids):
            buried_by_killer += 1
        else:
            reason = doc.get("dead_reason") if doc else None
            unexpected.append(f"job {job_id} ended {state} ({reason or 'no reason'})")

    poison_pids = {run.pid for run in executions.get(poison_id or "", [])}
    duplicates, after_kill, after_poison = _duplicates(
        executions, expected_ids, poison_id, killed_pids, poison_pids
    )
    waits = _rescue_waits(executions, kills, durations_ms, poison_id)
    pickups = [
        (executions[job_id][0].at - by_id[job_id]["run_at"]).total_seconds() * 1000
        for job_id in expected_ids
        if job_id != poison_id and executions.get(job_id) and job_id in by_id
    ]
    poison_doc = by_id.get(poison_id) if poison_id else None
    return Verdict(
        jobs=len(expected_ids),
        completed=completed,
        lost=lost,
        unexpected=unexpected,
        buried_by_killer=buried_by_killer,
        states=dict(states),
        duplicates=duplicates,
        duplicates_after_kill=after_kill,
        duplicates_after_poison=after_poison,
        unrecorded=sum(
            1
            for job_id in expected_ids
            if job_id != poison_id and not executions.get(job_id) and job_id in by_id
        ),
        poison_state=_poison_state(poison_doc) if poison_id else "none",
        poison_crashes=int(poison_doc.get("crashes", 0)) if poison_doc else 0,
        rescued_jobs=len(waits),
        max_rescue_wait_s=round(max(waits.values(), default=0.0), 3),
        rescue_wait_p50_s=round(percentile(list(waits.values()), 50), 3),
        pickup_p50_ms=round(percentile(pickups, 50), 1),
        pickup_p99_ms=round(percentile(pickups, 99), 1),
    )


def _killed_into_poison(
    doc: Mapping[str, Any] | None, runs: Sequence[Execution], killed_pids: set[int]
) -> bool:
    """True if the job went dead as poison and the killer took down every one of its runs."""
    if doc is None or doc.get("state") != "dead" or doc.get("dead_reason") != "poison":
        return False
    return len(runs) >= int(doc.get("crashes", 0)) > 0 and all(r.pid in killed_pids for r in runs)


def _poison_state(doc: Mapping[str, Any] | None) -> str:
    if doc is None:
        return "missing"
    reason = doc.get("dead_reason")
    return f"{doc['state']}:{reason}" if reason else str(doc["state"])


def _duplicates(
    executions: Mapping[str, list[Execution]],
    expected_ids: Sequence[str],
    poison_id: str | None,
    killed_pids: set[int],
    poison_pids: set[int],
) -> tuple[int, int, int]:
    """Count executions beyond one per job: in all, after a kill, after the poison job's crash.

    An execution is followed by another one because its process died under it: killed by the
    run, or taken down by the poison job it shared the process with.
    """
    total = after_kill = after_poison = 0
    for job_id in expected_ids:
        runs = executions.get(job_id, [])
        if job_id == poison_id or len(runs) < 2:
            continue
        total += len(runs) - 1
        after_kill += sum(1 for run in runs[:-1] if run.pid in killed_pids)
        after_poison += sum(1 for run in runs[:-1] if run.pid in poison_pids)
    return total, after_kill, after_poison


def _rescue_waits(
    executions: Mapping[str, list[Execution]],
    kills: Sequence[Kill],
    durations_ms: Mapping[str, float],
    poison_id: str | None,
) -> dict[str, float]:
    """Return, per re-executed job, the longest gap from losing its worker to running again.

    The worker was lost when the run killed its pid (the first kill of that pid after the
    execution started); failing that (a crash on its own, a database restart), when the
    execution would have finished.
    """
    kill_times: dict[int, list[datetime]] = defaultdict(list)
    for kill in kills:
        kill_times[kill.pid].append(kill.at)
    waits: dict[str, float] = {}
    for job_id, runs in executions.items():
        if job_id == poison_id or len(runs) < 2:
            continue
        worst = 0.0
        for previous, following in zip(runs, runs[1:], strict=False):
            lost_at = next((t for t in kill_times.get(previous.pid, []) if t >= previous.at), None)
            if lost_at is None or lost_at > following.at:
                gap = (following.at - previous.at).total_seconds()
                lost_s = gap - durations_ms.get(job_id, 0.0) / 1000
            else:
                lost_s = (following.at - lost_at).total_seconds()
            worst = max(worst, lost_s)
        waits[job_id] = max(worst, 0.0)
    return waits


def states_line(states: Mapping[str, int]) -> str:
    """Return 'state=count' pairs, most frequent first."""
    return ", ".join(f"{state}={count}" for state, count in Counter(states).most_common())
