"""The login ledger: the bookkeeping of successful logins, written a moment later, in bulk.

A login counts its attempt before it checks the password (stores/limits.py: a burst cannot
outrun the count), so a good login owes two writes afterwards: give the attempt back to the
client's network counters and end the account's run of failures, and record the login in the
user's security log. Neither decides anything the user is waiting for, so each API worker keeps
them here and writes them every FLUSH_EVERY_S (or once BATCH have gathered): one bulk write to
`rate_limits` and one insert into `security_events` for all the logins of that moment, and one
check of the session cap (API_MAX_SESSIONS_PER_USER) for the users who started sessions. A
login itself then costs three database commands: the user's read, the count, the session.

API_LOGIN_LEDGER_FLUSH_MS=0 writes each login's bookkeeping at once (two more commands per login;
the in-process tests do, to read the security log right after a login). What the batching
trades: a worker killed -9 loses up to FLUSH_EVERY_S of them (the logins stand; their
security-log lines are missing and their attempts stay counted until the windows roll on), and
a failure right after a success may still see the success's attempt counted for that moment. A
flush that fails keeps its entries for the next (at most MAX_PENDING, the oldest dropped).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo.errors import InvalidOperation, PyMongoError

from api.auth.stores.limits import Counted, RateLimits
from api.auth.stores.security_log import SecurityLog

log = logging.getLogger("api.auth")
FLUSH_EVERY_S = 0.5
BATCH = 200
MAX_PENDING = 20_000


@dataclass
class _Pending:
    refunds: list[Counted] = field(default_factory=list)
    ends: list[Counted] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    evictions: set[ObjectId] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.refunds) + len(self.ends) + len(self.events) + len(self.evictions)


class LoginLedger:
    """Gather the bookkeeping of good logins and write it in bulk (see the module docstring)."""

    def __init__(
        self,
        limits: RateLimits,
        security: SecurityLog,
        *,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        self._limits = limits
        self._security = security
        self._every_s = flush_every_s
        self._background = flush_every_s > 0  # 0: every settle writes at once
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._evict: Callable[[set[ObjectId]], None] = lambda users: None

    def on_eviction(self, evict: Callable[[set[ObjectId]], None]) -> None:
        """Set what ends the sessions beyond a user's cap (steps/eviction.py)."""
        self._evict = evict

    def owe_eviction(self, user_id: ObjectId) -> None:
        """The user started a session: check their cap of live sessions at the next flush."""
        with self._lock:
            self._pending.evictions.add(user_id)
        if self._background:
            self._start()

    def settle(
        self,
        *,
        refunds: Iterable[Counted] = (),
        ends: Iterable[Counted] = (),
        events: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Owe these writes: counters to give an event back to, runs to end, events to log."""
        with self._lock:
            self._pending.refunds.extend(refunds)
            self._pending.ends.extend(ends)
            self._pending.events.extend(events)
            full = len(self._pending) >= BATCH
        if not self._background:
            self.flush()
        else:
            self._start()
            if full:
                self._wake.set()

    def flush(self) -> bool:
        """Write everything owed now; False if the database refused (it stays owed)."""
        with self._lock:
            owed, self._pending = self._pending, _Pending()
        if not len(owed):
            return True
        try:
            if owed.refunds or owed.ends:
                self._limits.settle(owed.refunds, owed.ends)
                owed.refunds, owed.ends = [], []
            self._security.record_many(owed.events)
            owed.events = []
            if owed.evictions:
                self._evict(owed.evictions)
            return True
        except InvalidOperation:
            raise  # a closed client: retrying cannot help
        except PyMongoError as exc:
            log.warning("login ledger flush failed (%s); retrying", type(exc).__name__)
            with self._lock:
                self._pending.refunds[:0] = owed.refunds
                self._pending.ends[:0] = owed.ends
                self._pending.events[:0] = owed.events
                self._pending.evictions |= owed.evictions
                self._trim()
            return False

    @property
    def owed(self) -> int:
        """How many writes are waiting."""
        with self._lock:
            return len(self._pending)

    def _trim(self) -> None:
        for entries in (self._pending.events, self._pending.refunds, self._pending.ends):
            if len(entries) > MAX_PENDING:
                del entries[: len(entries) - MAX_PENDING]

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="login-ledger", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._every_s)
            self._wake.clear()
            try:
                self.flush()
            except InvalidOperation:
                return  # the client was closed: this app is being torn down
            except Exception:  # noqa: BLE001 - a bug here must not stop the bookkeeping
                log.exception("login ledger flush failed")
