"""The user documents authentication reads, kept in each API worker's memory and kept fresh by a
change stream on `users`: in the steady state an authenticated request costs the database
nothing, and revocation still takes effect at once.

Everything that ends an access token writes the user document (a logout or an ended session
adds to `revoked_sessions`, logout-all and password changes bump `token_version`), so one
stream tells each worker which cached users to forget, within milliseconds of the write.

    hit       the entry was read while the stream ran, and no event for the user has come since
    miss      read the database and cache the answer, unless an event for that user arrived
              while the read was under way (the answer may predate the change: not cached)
    fallback  the stream is down (not started yet, broken, or the server has none): entries are
              trusted for FALLBACK_TTL_S after their read, never longer, and every (re)start of
              the stream empties the cache, since events may have been missed meanwhile

The cache holds at most `size` users (least recently used go first). One watcher per worker
process, started on first use, after the fork; under gevent it is a greenlet.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

log = logging.getLogger("api.auth")
FALLBACK_TTL_S = 1.0
RETRY_S = 1.0
AWAIT_MS = 500
Doc = dict[str, Any]


@dataclass(frozen=True)
class Entry:
    doc: Doc | None
    epoch: int  # the stream run it was read under (0: none ran)
    read_at: float


class UserCache:
    """See the module docstring."""

    instances: weakref.WeakSet[UserCache] = weakref.WeakSet()

    def __init__(
        self,
        users: Collection[Doc],
        load: Callable[[ObjectId], Doc | None],
        *,
        size: int = 10_000,
        count: Callable[[str], None] = lambda result: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = users
        self._load = load
        self._size = size
        self._count = count
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: OrderedDict[ObjectId, Entry] = OrderedDict()
        self._invalidated: OrderedDict[ObjectId, int] = OrderedDict()  # id → seq of its event
        self._seq = 0
        self._epoch = 0  # increases at every stream start; entries of older runs are stale
        self.healthy = False
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        UserCache.instances.add(self)

    def get(self, user_id: ObjectId) -> Doc | None:
        """Return the user's auth document (None: no such user), from memory when it is safe."""
        self._start()
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None:
                # With the stream up, only what was read under this run of it; without, only
                # what is younger than the fallback TTL.
                if self.healthy and entry.epoch == self._epoch:
                    self._entries.move_to_end(user_id)
                    self._count("hit")
                    return entry.doc
                if not self.healthy and now - entry.read_at < FALLBACK_TTL_S:
                    self._count("fallback")
                    return entry.doc
            seq, epoch = self._seq, self._epoch if self.healthy else 0
        doc = self._load(user_id)
        self._count("miss")
        with self._lock:
            changed = self._invalidated.get(user_id, 0) > seq or self._seq - seq > self._size
            if not changed and (epoch == 0 or epoch == self._epoch):
                self._entries[user_id] = Entry(doc, epoch, now)
                self._entries.move_to_end(user_id)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return doc

    @property
    def stream_starts(self) -> int:
        """How many times the stream has started (each start empties the cache)."""
        return self._epoch

    @property
    def collection(self) -> str:
        """The watched collection's full name (database.collection)."""
        return self._users.full_name

    def forget(self, user_id: ObjectId) -> None:
        """The user document changed: drop it, and keep any read under way from caching it."""
        with self._lock:
            self._seq += 1
            self._entries.pop(user_id, None)
            self._invalidated[user_id] = self._seq
            self._invalidated.move_to_end(user_id)
            while len(self._invalidated) > self._size:
                self._invalidated.popitem(last=False)

    def close(self) -> None:
        self._closed.set()

    # -- the stream ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._watcher is None:
            with self._lock:
                if self._watcher is None:
                    self._watcher = threading.Thread(
                        target=self._watch, name="user-cache-stream", daemon=True
                    )
                    self._watcher.start()

    def _watch(self) -> None:
        pipeline: list[Doc] = [
            {"$match": {"operationType": {"$in": ["update", "replace", "delete"]}}},
            {"$project": {"documentKey": 1}},
        ]
        while not self._closed.is_set():
            try:
                with self._users.watch(pipeline, max_await_time_ms=AWAIT_MS) as stream:
                    with self._lock:
                        self._epoch += 1
                        self._entries.clear()  # what happened before the stream is unknown
                        self.healthy = True
                    while not self._closed.is_set() and stream.alive:
                        change = stream.try_next()
                        if change is not None:
                            self.forget(change["documentKey"]["_id"])
            except PyMongoError as exc:
                log.info(
                    "user stream broke (%s); reading users with a short TTL", type(exc).__name__
                )
            except Exception:  # noqa: BLE001 - a bug here must never leave stale state trusted
                log.exception("user stream failed; reading users with a short TTL")
            with self._lock:
                self.healthy = False
            self._closed.wait(RETRY_S)
