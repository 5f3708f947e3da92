"""Compaction of Prometheus multiprocess files, so a scrape stays fast after many restarts.

In multiprocess mode every process writes `<type>_<pid>.db` files that the MultiProcessCollector
reads at each scrape. A dead process's counters must keep counting (or Prometheus would see a
reset), so its files used to stay forever and scrape time grew with the number of restarts.
`archive_dead_process` folds a dead process's counter, histogram and summary files into one
archive per type (`counter_archive.db`, ...: ordinary MmapedDict files the stock collector reads
like any other process's) and deletes them, so the directory holds one file per live process and
type plus the archives.

Why the sum is exact: those three types are sums over processes of per-key values (histogram
buckets are stored per bucket, not cumulated), so adding a key's values across files before the
collector does gives the collector the same totals. Keys are copied byte for byte.

Gauges are left alone: live* modes are already deleted by mark_process_dead; "all" keeps one
series per pid, so folding would merge series; "sum"/"max"/"min"/"mostrecent" could be folded but
no metric of ours uses them, and an untested fold is worse than a few extra files.

Concurrency: a flock on `compaction.lock` in the directory. Scrapers (`LockedMultiProcessCollector`)
hold it shared while they list and read the files; the compactor holds it exclusive from reading
to deleting, so a scrape sees either the dead files or the archive that contains them, never both
nor neither. Linux flock lets new shared holders in while an exclusive one waits, so overlapping
scrapes could starve the compactor: a second lock, `compaction.gate`, is held by the compactor
while it waits and passed through (taken and released) by each scraper before it locks shared.

Crash safety: the new archive is written to `<archive>.new`, then the dead files are
renamed to `*.db.folding` (hidden from the collector's `*.db` glob), then the archive is replaced
(the commit point), then the hidden files are deleted. A compactor killed half-way leaves a state
the next compaction repairs: `.new` present means not committed (roll the hidden files back),
absent means committed (delete them).
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LOCK_NAME = "compaction.lock"
GATE_NAME = "compaction.gate"
ARCHIVE_ID = "archive"
# Types whose samples are sums over processes (summary files hold only _count and _sum).
FOLDED_TYPES = ("counter", "histogram", "summary")
_NEW = ".new"
_FOLDING = ".folding"
_POLL_S = 0.005


def _open(path: str, name: str) -> int:
    return os.open(os.path.join(path, name), os.O_RDWR | os.O_CREAT, 0o600)


@contextmanager
def scrape_lock(path: str) -> Iterator[None]:
    """Hold the directory's lock shared (waits while a compaction runs or waits to run)."""
    lock = _open(path, LOCK_NAME)
    try:
        # Through the gate first: a waiting compactor holds it, so a stream of overlapping
        # scrapes cannot keep the shared lock taken for ever (flock has no writer preference).
        gate = _open(path, GATE_NAME)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_SH)
        finally:
            os.close(gate)
        yield
    finally:
        os.close(lock)  # closing the descriptor releases the lock


@contextmanager
def _compaction_lock(path: str, timeout_s: float) -> Iterator[bool]:
    """Hold gate and lock exclusive; yield False if scrapers kept them past timeout_s."""
    deadline = time.monotonic() + timeout_s
    gate = _open(path, GATE_NAME)
    lock = _open(path, LOCK_NAME)
    try:
        yield _acquire_exclusive(gate, deadline) and _acquire_exclusive(lock, deadline)
    finally:
        os.close(lock)
        os.close(gate)


def _acquire_exclusive(fd: int, deadline: float) -> bool:
    """Poll for the exclusive lock until the deadline (a stopped scraper must not hang us)."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


class LockedMultiProcessCollector(Collector):
    """The stock MultiProcessCollector's collect, under the directory's shared lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        if not os.path.isdir(self._path):
            raise ValueError(f"metrics directory {self._path} does not exist")

    def collect(self) -> Iterable[Metric]:
        with scrape_lock(self._path):
            files = glob.glob(os.path.join(self._path, "*.db"))
            return list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


def archive_path(path: str, typ: str) -> str:
    """Return the archive file of one metric type in the directory."""
    return os.path.join(path, f"{typ}_{ARCHIVE_ID}.db")


def archive_dead_process(pid: int, directory: str, *, lock_timeout_s: float = 2.0) -> bool:
    """Fold a dead process's counter/histogram/summary files into the archives.

    Call it only once `pid` has exited (after waitpid), and after mark_process_dead. Return False
    if the lock could not be taken in time: the files then stay where they are and are still
    counted, just not compacted.
    """
    with _compaction_lock(directory, lock_timeout_s) as locked:
        if not locked:
            log.warning("metrics files of pid %d not compacted: scrapers held the lock", pid)
            return False
        _recover(directory)
        for typ in FOLDED_TYPES:
            dead = os.path.join(directory, f"{typ}_{pid}.db")
            if os.path.exists(dead):
                _fold(directory, typ, [dead])
    return True


def _read_raw(files: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Sum each key's value across files (keeping the latest timestamp)."""
    totals: dict[str, tuple[float, float]] = {}
    for f in files:
        for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(f):  # type: ignore[no-untyped-call]
            old_value, old_ts = totals.get(key, (0.0, 0.0))
            totals[key] = (old_value + value, max(old_ts, timestamp))
    return totals


def _fold(directory: str, typ: str, files: list[str]) -> None:
    """Replace the type's archive by archive + files and delete the files (lock held)."""
    archive = archive_path(directory, typ)
    sources = ([archive] if os.path.exists(archive) else []) + files
    totals = _read_raw(sources)
    new = archive + _NEW
    if os.path.exists(new):
        os.unlink(new)
    out = MmapedDict(new)  # type: ignore[no-untyped-call]
    try:
        for key, (value, timestamp) in totals.items():
            out.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        out.close()  # type: ignore[no-untyped-call]
    for f in files:
        os.rename(f, f + _FOLDING)
    os.replace(new, archive)  # the commit point
    for f in files:
        os.unlink(f + _FOLDING)


def _recover(directory: str) -> None:
    """Finish or undo a compaction that was killed half-way (lock held)."""
    for typ in FOLDED_TYPES:
        new = archive_path(directory, typ) + _NEW
        hidden = glob.glob(os.path.join(directory, f"{typ}_*.db{_FOLDING}"))
        if os.path.exists(new):
            for f in hidden:  # not committed: the archive lacks them, show them again
                os.rename(f, f.removesuffix(_FOLDING))
            os.unlink(new)
        else:
            for f in hidden:  # committed: the archive holds them
                os.unlink(f)
        if hidden:
            log.warning("repaired an interrupted metrics compaction (%d files)", len(hidden))
