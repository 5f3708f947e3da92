"""The schedule the end-to-end observability run keeps, so the schedule metrics have samples."""

from queue_worker import schedule

schedule("e2e.heartbeat", task="bench.noop", every_s=2, overlap="allow")
