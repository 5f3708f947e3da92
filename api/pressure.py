"""Connection pressure, as the gunicorn worker (server.py) tells the app (middleware.py).

While a worker holds more than half of its worker_connections it sets BUSY_ENVIRON_KEY in each
request's environ, and a body must then arrive within BUSY_BODY_S instead of API_BODY_TIMEOUT_S:
a flood of slow bodies from many addresses (past the per-client cap) holds each place for a
second, not ten, and everyone else gets places again. A real body is at most
API_MAX_BODY_BYTES (64 KiB): a second is a 64 KB/s link. Kept free of imports: the gunicorn
master loads server.py, and must not load pymongo (gevent patches ssl in the workers first).
"""

BUSY_ENVIRON_KEY = "jobauth.worker_busy"
BUSY_BODY_S = 1.0
