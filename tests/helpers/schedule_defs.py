"""Schedules for tests that run real supervisors and the CLI (QUEUE_TASK_MODULES=schedule_defs,
with the bench tasks enabled)."""

from queue_worker import schedule

# Every tick must get exactly one job: the three-supervisor test counts them.
schedule("test.every_second", task="bench.noop", every_s=1, missed="all", overlap="allow")
# After an outage: one catch-up job.
schedule("test.latest", task="bench.noop", every_s=1, overlap="allow")
schedule("test.nightly", task="bench.noop", cron="30 2 * * *", tz="Europe/Berlin")
