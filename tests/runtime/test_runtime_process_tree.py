"""The process-tree collector that both faces use for their resource metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry
from waiting import wait_until

from runtime.process_tree import ProcessTreeCollector

BURN_CPU = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, f"{name} missing"
    return value


def test_tree_includes_live_children() -> None:
    """A live child's memory and the process count show up in the root's figures."""
    registry = CollectorRegistry()
    registry.register(ProcessTreeCollector(os.getpid()))
    alone = sample(registry, "process_tree_processes")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        kid = psutil.Process(child.pid)
        wait_until(lambda: kid.memory_info().rss > 4 << 20, what="the child's interpreter")
        own, kid_rss = psutil.Process().memory_info().rss, kid.memory_info().rss
        own_fds, kid_fds = psutil.Process().num_fds(), kid.num_fds()
        assert sample(registry, "process_tree_processes") == alone + 1
        # The child's share is in the sums (a 1 MiB allowance for our own memory moving).
        assert sample(registry, "process_resident_memory_bytes") >= own + kid_rss - (1 << 20)
        assert sample(registry, "process_open_fds") >= own_fds + kid_fds - 2
        assert sample(registry, "process_start_time_seconds") == psutil.Process().create_time()
    finally:
        child.communicate(b"")


def test_cpu_counter_keeps_reaped_children_time() -> None:
    """CPU time never drops when a child exits: a reaped child's time moves to the root."""
    registry = CollectorRegistry()
    registry.register(ProcessTreeCollector(os.getpid()))
    before = sample(registry, "process_cpu_seconds_total")
    subprocess.run([sys.executable, "-c", BURN_CPU], check=True)  # run() reaps the child
    after = sample(registry, "process_cpu_seconds_total")
    assert after - before >= 0.25


def test_vanished_root_reports_nothing() -> None:
    """A root that no longer exists yields no samples instead of failing the scrape."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    registry = CollectorRegistry()
    registry.register(ProcessTreeCollector(dead.pid))
    assert registry.get_sample_value("process_tree_processes") is None
