"""The user cache: authenticated requests stop reading the database, revocation by another
worker still takes effect within a second, and a broken stream never leaves stale state
trusted for longer than the fallback TTL."""

from __future__ import annotations

from typing import Any

from apihelpers import bearer, signup
from bson import ObjectId
from clocks import FakeMonotonic
from falcon import testing
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConnectionFailure
from waiting import wait_until

from api.app import create_app
from api.auth.passwords.hashing import HashPool
from api.auth.stores.user_cache import FALLBACK_TTL_S, UserCache
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from queue_worker import JobStore


def lookups(metrics: ApiMetrics, result: str) -> float:
    return (
        metrics.registry.get_sample_value("auth_user_cache_lookups_total", {"result": result})
        or 0.0
    )


def test_steady_state_requests_read_no_user(
    client: testing.TestClient, metrics: ApiMetrics
) -> None:
    tokens = signup(client)
    headers = bearer(tokens["access_token"])
    assert client.simulate_get("/users/profile", headers=headers).status_code == 200
    wait_until(lambda: any(c.healthy for c in UserCache.instances), what="the user stream")
    client.simulate_get("/users/profile", headers=headers)  # read under the running stream
    misses = lookups(metrics, "miss")
    for _ in range(20):
        assert client.simulate_get("/users/profile", headers=headers).status_code == 200
    assert lookups(metrics, "miss") == misses
    assert lookups(metrics, "hit") >= 20


def test_revocation_by_another_worker_reaches_this_one_through_the_stream(
    client: testing.TestClient,
    settings: ApiSettings,
    db: Database[Any],
    job_store: JobStore,
) -> None:
    """Worker A caches the user; worker B (another app, another cache) logs every session out;
    A refuses the old access token because its stream told it: A's entry never expires while
    its stream runs, and the stream did not restart (which would also empty the cache), so
    only the change event can have ended it."""
    tokens = signup(client)
    headers = bearer(tokens["access_token"])
    client.simulate_get("/users/profile", headers=headers)  # starts the stream
    cache_a = wait_until(
        lambda: next((c for c in UserCache.instances
                      if c.healthy and c.collection == f"{db.name}.users"), None),
        what="worker A's user stream",
    )  # fmt: skip
    assert client.simulate_get("/users/profile", headers=headers).status_code == 200
    starts = cache_a.stream_starts
    pool = HashPool(1, ApiMetrics())
    other = testing.TestClient(create_app(settings, db, job_store, hash_pool=pool))
    try:
        assert other.simulate_post("/users/logout-all", headers=headers).status_code == 204
        wait_until(
            lambda: client.simulate_get("/users/profile", headers=headers).status_code == 401,
            what="worker A to refuse the token",
        )
        assert cache_a.healthy and cache_a.stream_starts == starts
    finally:
        pool.close()


class BrokenStream:
    """A users collection whose change streams always fail."""

    def __init__(self, users: Collection[Any]) -> None:
        self.users = users

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionFailure("no change streams")


def test_without_the_stream_entries_live_only_for_the_fallback_ttl(db: Database[Any]) -> None:
    user_id = db.users.insert_one({"token_version": 0}).inserted_id
    reads: list[ObjectId] = []

    def load(uid: ObjectId) -> dict[str, Any] | None:
        reads.append(uid)
        return db.users.find_one({"_id": uid})

    clock = FakeMonotonic()
    cache = UserCache(BrokenStream(db.users), load, monotonic=clock)  # type: ignore[arg-type]
    cache.get(user_id)
    cache.get(user_id)
    assert len(reads) == 1 and not cache.healthy
    clock.now += FALLBACK_TTL_S + 0.01
    cache.get(user_id)
    assert len(reads) == 2
    cache.close()


def test_a_change_during_a_read_keeps_the_answer_out_of_the_cache(db: Database[Any]) -> None:
    user_id = db.users.insert_one({"token_version": 0}).inserted_id
    reads: list[int] = []
    cache: UserCache

    def load(uid: ObjectId) -> dict[str, Any] | None:
        doc = db.users.find_one({"_id": uid})
        if not reads:
            cache.forget(uid)  # the user changed while this read was under way
        reads.append(1)
        return doc

    cache = UserCache(db.users, load)
    wait_until(lambda: (cache.get(ObjectId()), cache.healthy)[1], 10, "the stream")
    reads.clear()
    cache.get(user_id)
    cache.get(user_id)
    assert len(reads) == 2  # the first answer was not kept
    cache.get(user_id)
    assert len(reads) == 2
    cache.close()


def test_the_cache_is_bounded(db: Database[Any]) -> None:
    ids = [db.users.insert_one({"n": n}).inserted_id for n in range(5)]
    reads: list[ObjectId] = []

    def load(uid: ObjectId) -> dict[str, Any] | None:
        reads.append(uid)
        return db.users.find_one({"_id": uid})

    cache = UserCache(db.users, load, size=3)
    wait_until(lambda: (cache.get(ObjectId()), cache.healthy)[1], 10, "the stream")
    reads.clear()
    for uid in ids:
        cache.get(uid)
    cache.get(ids[0])  # evicted by the newer ones
    cache.get(ids[4])  # still there
    assert reads == [*ids, ids[0]]
    cache.close()
