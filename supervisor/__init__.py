"""A pre-fork supervisor of queue consumers: `python -m supervisor`.

The master (master.py) forks consumer children (child.py), a metrics exporter (exporter.py) and
short-lived helpers (preflight.py, reaper.py). It never imports `queue_worker` or opens a database
connection itself: every database touch happens in a child, after the fork.
"""
