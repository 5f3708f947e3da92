"""Schedules `schedules validate` must refuse: an unknown task, a cron firing every minute."""

from queue_worker import schedule

schedule("bad.unknown_task", task="no.such.task", cron="0 3 * * *")
schedule("bad.too_often", task="bench.noop", cron="* * * * *")
