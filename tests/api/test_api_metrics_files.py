"""Under gunicorn, a killed worker's metrics files are folded into the archive by child_exit."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil  # type: ignore[import-untyped]
from apiserver import ApiServer, start_api
from waiting import wait_until

HEALTHZ = re.compile(
    r'http_requests_total\{method="GET",route="/healthz",status_class="2xx"\} (\S+)'
)


def _healthz_total(api: ApiServer) -> float:
    match = HEALTHZ.search(api.request("GET", "/metrics").body.decode())
    assert match is not None
    return float(match.group(1))


def _workers(api: ApiServer) -> list[int]:
    kids = psutil.Process(api.process.pid).children()
    return sorted(k.pid for k in kids if k.status() != psutil.STATUS_ZOMBIE)


def _pids_with_files(metrics_dir: Path) -> set[int]:
    names = (p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db"))
    return {int(n) for n in names if n.isdigit()}


# polling with a deadline


def test_killed_workers_leave_no_files_and_their_requests_stay_counted(
    mongo_env: dict[str, str],
) -> None:
    """After 3 rounds of SIGKILLing every worker: only live pids own files, totals kept."""
    api = start_api(mongo_env, workers=2)
    try:
        killed: set[int] = set()
        for _ in range(3):
            for _ in range(10):
                assert api.request("GET", "/healthz").status == 200
            before = _healthz_total(api)
            victims = _workers(api)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed.update(victims)
            wait_until(
                lambda: len(w := _workers(api)) == 2 and not killed & set(w),
                what="gunicorn to replace its workers",
            )
            wait_until(
                lambda: not killed & _pids_with_files(api.metrics_dir), what="dead pids' files"
            )
            assert _healthz_total(api) >= before  # never a reset
        assert _pids_with_files(api.metrics_dir) <= set(_workers(api)) | {api.process.pid}
        assert (api.metrics_dir / "counter_archive.db").exists()
        assert (api.metrics_dir / "histogram_archive.db").exists()
        assert _healthz_total(api) >= 30
    finally:
        api.stop()
