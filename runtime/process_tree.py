"""Resource metrics for a whole process tree: a pre-fork master and all its workers.

prometheus-client's own ProcessCollector describes only the process that serves the scrape, and
in multiprocess mode that is one random worker (API) or the exporter child (supervisor). Both
faces instead report their role's whole tree under the standard names, so a dashboard sees what
the role costs. It lives here, in the shared foundation, because `api` and `supervisor` may not
import each other.

CPU is a true counter: the root's own time, plus the time of children it has already reaped
(which the kernel adds to the root's `children_*` times), plus the live children's time.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ProcessTreeCollector(Collector):
    """Report CPU, memory, open files, process count and start time of a process tree."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            root = psutil.Process(self.root_pid)
            processes = [root, *root.children(recursive=True)]
            root_times = root.cpu_times()
            root_started = root.create_time()
        except psutil.Error:
            return  # the tree is gone (shutting down): report nothing rather than fail a scrape
        cpu_s = root_times.children_user + root_times.children_system
        rss_bytes = fds = alive = 0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu_s += times.user + times.system
                    rss_bytes += process.memory_info().rss
                    fds += process.num_fds()
                    alive += 1
            except psutil.Error:
                continue  # exited between listing and reading: its time reaches the root later
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "CPU time of the role's process tree (master, workers, reaped workers), seconds.",
            value=cpu_s,
        )
        yield GaugeMetricFamily(
            "process_start_time_seconds",
            "Start time of the role's master process, seconds since the Unix epoch.",
            value=root_started,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of the role's live processes (master and workers), summed.",
            value=rss_bytes,
        )
        yield GaugeMetricFamily(
            "process_open_fds",
            "Open file descriptors of the role's live processes, summed.",
            value=fds,
        )
        yield GaugeMetricFamily(
            "process_tree_processes",
            "Live processes in the role's tree (master included).",
            value=alive,
        )
