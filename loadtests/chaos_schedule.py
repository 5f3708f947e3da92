"""The schedule the chaos run keeps while it kills consumers, the database and the supervisor:
every second, each tick its own job (`all`), so the report can count ticks exactly."""

from queue_worker import schedule

CHAOS_SCHEDULE = "chaos.tick"

schedule(CHAOS_SCHEDULE, task="bench.noop", every_s=1, missed="all", overlap="allow")
