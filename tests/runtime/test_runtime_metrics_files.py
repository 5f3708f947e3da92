"""Compaction of dead processes' Prometheus multiprocess files (runtime.metrics_files).

Processes are simulated with prometheus-client's own writer: a MultiProcessValue class whose
process identifier the test sets, so each "pid" writes real `<type>_<pid>.db` files exactly as a
real process would. Observed values are binary fractions so float sums are exact in any order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from runtime.metrics_files import (
    LockedMultiProcessCollector,
    archive_dead_process,
    scrape_lock,
)

ROOT = Path(__file__).resolve().parent.parent.parent
Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class SimulatedProcesses:
    """Metric objects whose values land in the files of whichever pid is current."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.pid = 1  # the master: unlabelled gauges get its files at creation
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
        value_class = values.MultiProcessValue(lambda: self.pid)  # type: ignore[no-untyped-call]
        monkeypatch.setattr(values, "ValueClass", value_class)
        r = CollectorRegistry()
        self.jobs = Counter("t_jobs_total", "Jobs.", ["queue", "task"], registry=r)
        self.run = Histogram(
            "t_run_seconds", "Run time.", ["task"], buckets=(0.25, 1.0, 4.0), registry=r
        )
        self.live = Gauge("t_live", "Live.", multiprocess_mode="livesum", registry=r)
        self.every = Gauge("t_every", "All.", multiprocess_mode="all", registry=r)
        self.peak = Gauge("t_peak", "Max.", multiprocess_mode="max", registry=r)

    def work(self, pid: int, n: int = 3) -> None:
        """Act as process `pid`: count jobs, observe run times, set gauges."""
        self.pid = pid
        for i in range(n):
            self.jobs.labels("default", f"task{i % 3}").inc()
            self.jobs.labels("mail", "send").inc(2)
            self.run.labels(f"task{i % 2}").observe((i % 5) * 0.75)
        self.live.set(1)
        self.every.set(pid % 7)
        self.peak.set(pid % 11)

    def die(self, pid: int) -> bool:
        """Do what the masters do once `pid` is reaped."""
        mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]
        return archive_dead_process(pid, str(self.path))

    def db_files(self) -> set[str]:
        return {p.name for p in self.path.glob("*.db")}


@pytest.fixture
def procs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedProcesses]:
    """Simulated processes writing into a fresh multiprocess directory."""
    yield SimulatedProcesses(tmp_path, monkeypatch)
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def snapshot(path: Path, collector: Callable[[str], object] | None = None) -> Snapshot:
    """Return every sample the stock MultiProcessCollector reports, keyed by name and labels."""
    registry = CollectorRegistry()
    if collector is None:
        MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    else:
        registry.register(LockedMultiProcessCollector(str(path)))
    out: Snapshot = {}
    for metric in registry.collect():
        for s in metric.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def counters_only(snap: Snapshot) -> Snapshot:
    """Drop gauge samples (their pid labels and live modes change when processes die)."""
    return {k: v for k, v in snap.items() if not k[0].startswith(("t_live", "t_every", "t_peak"))}


def test_compaction_keeps_every_counter_and_histogram_total(procs: SimulatedProcesses) -> None:
    """Folding 40 dead pids leaves labelled counters and histogram buckets/sum/count unchanged."""
    pids = list(range(100, 140))
    for pid in pids:
        procs.work(pid, n=pid % 6 + 1)
    procs.work(999)  # a live process, never folded
    procs.pid = 999
    before = snapshot(procs.path)
    for pid in pids:
        assert procs.die(pid)
    after = snapshot(procs.path)
    assert counters_only(after) == counters_only(before)
    assert after[("t_jobs_total", (("queue", "mail"), ("task", "send")))] == 2 * (
        sum(pid % 6 + 1 for pid in pids) + 3
    )
    assert after[("t_run_seconds_count", (("task", "task0"),))] > 0
    assert (
        after[("t_run_seconds_bucket", (("le", "+Inf"), ("task", "task0")))]
        == after[("t_run_seconds_count", (("task", "task0"),))]
    )
    assert {f for f in procs.db_files() if not f.endswith(("_999.db", "_1.db"))} == {
        "counter_archive.db",
        "histogram_archive.db",
        *{f"gauge_all_{pid}.db" for pid in pids},
        *{f"gauge_max_{pid}.db" for pid in pids},
    }


def test_non_live_gauges_of_dead_processes_are_left_alone(procs: SimulatedProcesses) -> None:
    """'all' and 'max' gauges keep their per-pid files and values; livesum files are dropped."""
    procs.work(7)
    procs.work(8)
    before = snapshot(procs.path)
    procs.die(7)
    after = snapshot(procs.path)
    assert after[("t_every", (("pid", "7"),))] == before[("t_every", (("pid", "7"),))]
    assert after[("t_peak", ())] == before[("t_peak", ())]
    assert after[("t_live", ())] == 1  # only pid 8 is live
    assert "gauge_livesum_7.db" not in procs.db_files()


def test_file_count_stays_bounded_after_300_dead_processes(procs: SimulatedProcesses) -> None:
    """After 300 processes died one by one, their counters and histograms sit in 2 archive files."""
    previous: int | None = None
    for pid in range(2000, 2300):
        procs.work(pid, n=1)
        if previous is not None:
            procs.die(previous)
        previous = pid
        folded = {f for f in procs.db_files() if f.startswith(("counter_", "histogram_"))}
        assert len(folded) <= 4  # 2 archives + the live process's 2 files
    assert snapshot(procs.path)[("t_jobs_total", (("queue", "mail"), ("task", "send")))] == 600


@pytest.mark.parametrize("dead", [10, 1000])
def test_a_scrape_reads_as_few_files_after_1000_dead_processes_as_after_10(
    procs: SimulatedProcesses, dead: int
) -> None:
    """The collector's glob finds the same counter/histogram files whatever the number of deaths."""
    for pid in range(10, 10 + dead):
        procs.work(pid, n=1)
        procs.pid = pid + 1  # the next process: `pid` is dead now
        procs.die(pid)
    folded = {f for f in procs.db_files() if f.startswith(("counter_", "histogram_"))}
    assert folded == {"counter_archive.db", "histogram_archive.db"}
    snap = snapshot(procs.path, LockedMultiProcessCollector)
    assert snap[("t_jobs_total", (("queue", "mail"), ("task", "send")))] == 2 * dead


_COMPACTOR = """
import sys
from runtime.metrics_files import archive_dead_process
for pid in sys.argv[2:]:
    assert archive_dead_process(int(pid), sys.argv[1], lock_timeout_s=30)
"""


def test_scrapes_racing_compactions_never_see_a_total_change(procs: SimulatedProcesses) -> None:
    """Threads scraping while another process folds 150 dead pids always read the same totals."""
    pids = list(range(500, 650))
    for pid in pids:
        procs.work(pid, n=pid % 4 + 1)
    procs.pid = 1
    expected = counters_only(snapshot(procs.path))
    seen: list[Snapshot] = []
    stop = threading.Event()

    def scrape_until_stopped() -> None:
        while not stop.is_set():
            seen.append(counters_only(snapshot(procs.path, LockedMultiProcessCollector)))

    scrapers = [threading.Thread(target=scrape_until_stopped) for _ in range(3)]
    for t in scrapers:
        t.start()
    try:
        subprocess.run(
            [sys.executable, "-c", _COMPACTOR, str(procs.path), *map(str, pids)],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
    finally:
        stop.set()
        for t in scrapers:
            t.join()
    assert len(seen) > 10
    assert all(s == expected for s in seen)
    assert counters_only(snapshot(procs.path)) == expected
    assert not any(f.startswith("counter_5") for f in procs.db_files())


def test_compaction_gives_up_while_a_scrape_holds_the_lock(procs: SimulatedProcesses) -> None:
    """A compactor that cannot get the lock in time leaves the files, still counted, in place."""
    procs.work(41)
    procs.pid = 42
    before = snapshot(procs.path)
    with scrape_lock(str(procs.path)):
        assert not archive_dead_process(41, str(procs.path), lock_timeout_s=0.05)
    assert "counter_41.db" in procs.db_files()
    assert snapshot(procs.path) == before
    assert archive_dead_process(41, str(procs.path))
    assert "counter_41.db" not in procs.db_files()


@pytest.mark.parametrize("fail_at", ["commit", "cleanup"])
def test_a_compaction_killed_half_way_is_repaired_by_the_next(
    procs: SimulatedProcesses, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """Killed before or after its commit point, a compaction never loses or doubles a count."""
    for pid in (51, 52, 53):
        procs.work(pid)
    procs.pid = 54
    assert archive_dead_process(51, str(procs.path))
    before = counters_only(snapshot(procs.path))
    real_replace, real_unlink = os.replace, os.unlink

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # stands for the process dying here

    with monkeypatch.context() as m:
        if fail_at == "commit":
            m.setattr(os, "replace", crash)
        else:
            m.setattr(
                os,
                "unlink",
                lambda p: crash() if str(p).endswith(".folding") else real_unlink(p),
            )
        with pytest.raises(KeyboardInterrupt):
            archive_dead_process(52, str(procs.path))
    assert os.replace is real_replace
    # Whatever a scrape reads now, the next compaction must restore the exact totals.
    assert archive_dead_process(53, str(procs.path))
    assert counters_only(snapshot(procs.path)) == before
    assert archive_dead_process(52, str(procs.path))
    assert counters_only(snapshot(procs.path)) == before
    leftovers = [p.name for p in procs.path.iterdir() if p.name.endswith((".new", ".folding"))]
    assert leftovers == []
    assert not any(
        f.endswith(("_51.db", "_52.db", "_53.db")) for f in procs.db_files() if "gauge" not in f
    )


def test_importing_the_module_starts_no_thread_and_opens_no_socket() -> None:
    """The supervisor's master may import it: no threads, no sockets (it stays DB-free)."""
    code = (
        "import os, threading, supervisor.process_ops\n"
        "fds = [os.readlink(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd')"
        " if os.path.exists(f'/proc/self/fd/{f}')]\n"
        "assert threading.active_count() == 1\n"
        "assert not [f for f in fds if f.startswith('socket:')], fds\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_the_metrics_files_module_does_not_load_pymongo() -> None:
    """The gunicorn and supervisor masters import it; they must not load pymongo (or its ssl)."""
    probe = "import sys, runtime.metrics_files; print('pymongo' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
