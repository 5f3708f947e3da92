"""Where the queue keeps things: every collection's name, and where a job of each state can be.

A job moves only forward, backlog -> jobs -> jobs_done:

    jobs_backlog    new jobs without an idempotency key, until promoted in batches (backlog.py)
    jobs            the claimed collection: promoted and keyed pending jobs, running, retrying and
                    dead ones. Claims scan it on the local server, so it is kept small: new jobs
                    wait in the backlog, and succeeded and cancelled jobs leave for `jobs_done`
                    (archive.py)
    jobs_done       succeeded and cancelled jobs, removed by a TTL index on finished_at
                    (QUEUE_RETENTION_S)

Beside them:

    job_keys        one marker per idempotency key whose job reached jobs_done (idempotency.py)
    job_promotions  the session ids of open promotion transactions (backlog.py)
    job_counts      jobs finished per minute, queue and outcome (tally.py)
    queue_controls  paused queues (controls.py)
    workers         the consumers' heartbeats (controls.py)
    schedules       periodic schedules and their cursors (schedules/store.py)

`locations(state)` is the one table of which collections a job of a state can be in; every
reader that looks for jobs by state asks it, in this order, so a job moving meanwhile is found in
the next collection.
"""

from __future__ import annotations

from queue_worker.job import TERMINAL_STATES, JobState

BACKLOG = "jobs_backlog"
JOBS = "jobs"
DONE = "jobs_done"
KEYS = "job_keys"
PROMOTIONS = "job_promotions"
COUNTS = "job_counts"
QUEUE_CONTROLS = "queue_controls"
WORKERS = "workers"
SCHEDULES = "schedules"

IN_MOVE_ORDER = (BACKLOG, JOBS, DONE)
"""Where a job can be, in the order it moves (reading in this order never misses one)."""
UNFINISHED = (BACKLOG, JOBS)
"""Where pending, running and dead jobs are: the live view, whose size does not grow with
retention."""


def locations(state: JobState | None = None) -> tuple[str, ...]:
    """Return the collections a job of `state` can be in, in the order jobs move (all of them
    for None): pending in the backlog or `jobs`; running and dead in `jobs`; succeeded and
    cancelled in `jobs` until archived, then in `jobs_done`."""
    if state is None:
        return IN_MOVE_ORDER
    if state is JobState.PENDING:
        return UNFINISHED
    if state in TERMINAL_STATES:
        return (JOBS, DONE)
    return (JOBS,)
