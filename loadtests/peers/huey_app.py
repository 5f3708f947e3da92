"""The huey-mongodb side of the peer benchmark: a MongoHuey on PEER_MONGODB_URI, one no-op task.

Imported by `huey_consumer huey_app.huey` and by `drain.py` (to enqueue). Runs in the benchmark
venv (var/bench-venv), never in the project's.
"""

from __future__ import annotations

import os

from huey_mongodb import MongoHuey

huey = MongoHuey(
    "bench",
    database=os.environ["PEER_MONGODB_DATABASE"],
    host=os.environ["PEER_MONGODB_URI"],
    results=False,  # no result writes: like our no-op job, the measured cost is claim + run
)


@huey.task()
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the work."""
