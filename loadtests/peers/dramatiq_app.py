"""The dramatiq-mongodb side of the peer benchmark: a broker on PEER_MONGODB_URI, a no-op actor.

Imported by `dramatiq dramatiq_app` worker processes and by `drain.py` (to enqueue). Runs in the
benchmark venv (var/bench-venv), never in the project's.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq_mongodb import MongoDBBroker
from pymongo import MongoClient

client: MongoClient = MongoClient(os.environ["PEER_MONGODB_URI"])
broker = MongoDBBroker(database=client[os.environ["PEER_MONGODB_DATABASE"]])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the work."""
