"""One stats snapshot for the whole API, shared by every open dashboard tab and every worker:
the live counts per queue and state, the oldest due job, the last hour's outcomes per minute
(the consumers' counters), the live consumers and the paused queues are computed about once per
REFRESH_S however many tabs poll and however many workers serve them. A dashboard must not
become the load on the database it watches.

Each read asks for the shared copy's time (one document in `admin_snapshot`, by id): if it is
fresh the worker answers from its own copy, or loads the shared one when that is newer; only if
it is stale (or an action deleted it) does the worker compute a new one and store it for the
others. Two workers may compute at the same moment now and then: harmless. Each
poll answers with an ETag over the figures, so an unchanged snapshot costs a 304.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from queue_worker import admin, tally
from queue_worker.controls import Controls
from queue_worker.job import JobState
from queue_worker.store import JobStore

REFRESH_S = 5.0
ALIVE_S = 15.0  # a consumer heard from this recently counts as alive
SHARED = "admin_snapshot"
SHARED_ID = "overview"


class Snapshot:
    """The shared overview figures; see the module docstring."""

    def __init__(self, store: JobStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._controls = Controls(store.db)
        self._shared: Collection[dict[str, Any]] = store.db[SHARED]
        self._clock = clock
        self._lock = threading.Lock()
        self._taken_at: datetime | None = None
        self._value: dict[str, Any] = {}
        self.etag = ""
        self.computed = 0  # how many snapshots this worker computed (tests, curiosity)

    def get(self) -> dict[str, Any]:
        """Return the current snapshot, computing one only if the shared copy is stale."""
        now = self._clock()
        with self._lock:
            shared = self._shared.find_one({"_id": SHARED_ID}, {"taken_at": 1})
            if shared is not None and self._fresh(shared["taken_at"], now):
                if shared["taken_at"] != self._taken_at:  # another worker's newer copy
                    doc = self._shared.find_one({"_id": SHARED_ID})
                    if doc is not None:
                        self._adopt(doc["taken_at"], json.loads(doc["value"]))
                return self._value
            value = self._take(now)
            self.computed += 1
            try:
                self._shared.replace_one(
                    {"_id": SHARED_ID},
                    {"taken_at": now, "value": json.dumps(value, default=str)},
                    upsert=True,
                )
            except DuplicateKeyError:
                pass  # two workers' upserts raced: the other one's copy is as good as ours
            self._adopt(now, value)
            return self._value

    def invalidate(self) -> None:
        """An action changed something: the next read, in any worker, takes a new snapshot."""
        with self._lock:
            self._taken_at = None
            self._shared.delete_one({"_id": SHARED_ID})

    @staticmethod
    def _fresh(taken_at: datetime | None, now: datetime) -> bool:
        # A copy taken "later" than now (another worker's clock) counts as fresh too.
        return taken_at is not None and now - taken_at < timedelta(seconds=REFRESH_S)

    def _adopt(self, taken_at: datetime, value: dict[str, Any]) -> None:
        self._taken_at, self._value = taken_at, value
        figures = {k: v for k, v in value.items() if k != "at"}  # the same figures: the same tag
        encoded = json.dumps(figures, sort_keys=True, default=str).encode()
        self.etag = '"' + hashlib.sha256(encoded).hexdigest()[:20] + '"'

    def _take(self, now: datetime) -> dict[str, Any]:
        # Live work only (the backlog and `jobs`); finished work from the consumers' per-minute
        # counters (queue_worker/tally.py): `jobs_done` is never counted, however large it is.
        stats = admin.stats(self._store, now, finished=False).as_dict()["queues"]
        series, last_hour = tally.per_minute(self._store.db, now)
        zero = {state.value: 0 for state in JobState}
        for queue in last_hour:
            stats.setdefault(queue, {"counts": dict(zero), "oldest_due_age_s": None})
        for queue, info in stats.items():
            info["last_hour"] = last_hour.get(queue, dict.fromkeys(tally.OUTCOMES, 0))
        workers = self._controls.alive(since=now - timedelta(seconds=ALIVE_S))
        paused = self._controls.paused()
        totals = {state: sum(info["counts"][state] for info in stats.values())
                  for state in ("pending", "running", "dead")}  # fmt: skip
        for outcome in tally.OUTCOMES:
            totals[f"{outcome}_1h"] = sum(series[outcome])
        totals["retained"] = self._store.done.estimated_document_count()  # metadata: O(1)
        waiting = any(info["oldest_due_age_s"] is not None for info in stats.values())
        warnings = []
        if waiting and not workers:
            warnings.append("Jobs are waiting and no consumer has been heard from in 15 s.")
        if paused:
            warnings.append(f"Paused queues: {', '.join(sorted(paused))}.")
        return {
            "at": now.isoformat(),
            "queues": dict(sorted(stats.items())),
            "totals": totals,
            "throughput": series,
            "consumers": len(workers),
            "workers": [
                {
                    "owner": w["_id"],
                    "host": w.get("host"),
                    "pid": w.get("pid"),
                    "ppid": w.get("ppid"),
                    "rss_mb": w.get("rss_mb"),
                    "queues": w.get("queues"),
                    "paused": w.get("paused", []),
                    "running": w.get("running", []),
                    "seen_at": w["seen_at"].isoformat(),
                    "started_at": str(w.get("started_at") or ""),
                }
                for w in workers
            ],  # fmt: skip
            "paused": sorted(paused),
            "warnings": warnings,
        }
