"""QueueSettings.from_env: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

import pytest

from queue_worker.errors import ConfigError
from queue_worker.settings import QueueSettings


def test_defaults_match_the_documented_table() -> None:
    """An empty environment gives the documented defaults, heartbeat a third of the lease."""
    s = QueueSettings.from_env({})
    assert s.mongodb_uri == "mongodb://127.0.0.1:27017/app?directConnection=true"
    assert s.mongodb_database == "app"
    assert (s.default_queue, s.lease_s, s.heartbeat_s, s.poll_max_s) == ("default", 30.0, 10.0, 1.0)
    assert (s.backoff_base_s, s.backoff_cap_s, s.max_attempts) == (1.0, 300.0, 5)
    assert (s.timeout_s, s.retention_s, s.poison_crashes, s.concurrency) == (300.0, 604800, 3, 4)
    assert s.task_modules == ()  # the library names no application module
    assert s.promote_batch == 32
    assert s.enable_bench_tasks is False


def test_values_are_read_from_the_environment() -> None:
    """Every variable is parsed into its typed field; the database comes from the URI path."""
    s = QueueSettings.from_env(
        {
            "MONGODB_URI": "mongodb://db:27017/shop?directConnection=true",
            "QUEUE_LEASE_S": "6",
            "QUEUE_CONCURRENCY": "8",
            "QUEUE_PROMOTE_BATCH": "100",
            "QUEUE_TASK_MODULES": "a.tasks, b.tasks ,",
            "QUEUE_ENABLE_BENCH_TASKS": "1",
        }
    )
    assert s.mongodb_database == "shop"
    assert (s.lease_s, s.heartbeat_s, s.concurrency, s.promote_batch) == (6.0, 2.0, 8, 100)
    assert s.task_modules == ("a.tasks", "b.tasks")
    assert s.enable_bench_tasks is True


def test_mongodb_database_overrides_the_uri_path() -> None:
    """MONGODB_DATABASE wins over the database named in the URI."""
    s = QueueSettings.from_env({"MONGODB_URI": "mongodb://h/one", "MONGODB_DATABASE": "two"})
    assert s.mongodb_database == "two"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QUEUE_LEASE_S": "abc"}, "QUEUE_LEASE_S='abc': must be a number"),
        ({"QUEUE_MAX_ATTEMPTS": "1.5"}, "QUEUE_MAX_ATTEMPTS='1.5': must be a whole number"),
        ({"QUEUE_CONCURRENCY": "0"}, "QUEUE_CONCURRENCY='0': must be at least 1"),
        ({"QUEUE_PROMOTE_BATCH": "0"}, "QUEUE_PROMOTE_BATCH='0': must be at least 1"),
        ({"QUEUE_POLL_MAX_S": "nan"}, "QUEUE_POLL_MAX_S='nan': must be a finite number"),
        ({"QUEUE_LEASE_S": "3", "QUEUE_HEARTBEAT_S": "3"}, "must be shorter than QUEUE_LEASE_S"),
        ({"QUEUE_BACKOFF_BASE_S": "10", "QUEUE_BACKOFF_CAP_S": "5"}, "QUEUE_BACKOFF_CAP_S"),
        ({"QUEUE_ENABLE_BENCH_TASKS": "maybe"}, "QUEUE_ENABLE_BENCH_TASKS='maybe': must be 0"),
        ({"QUEUE_DEFAULT_QUEUE": "a b"}, "QUEUE_DEFAULT_QUEUE"),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    """A bad value fails at start with a ConfigError that names the variable and the value."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        QueueSettings.from_env(env)


def test_constructed_settings_default_the_heartbeat_to_a_third_of_the_lease() -> None:
    """QueueSettings(lease_s=6) heartbeats every 2 s without naming heartbeat_s."""
    assert QueueSettings(lease_s=6).heartbeat_s == 2.0
    assert QueueSettings().heartbeat_s == 10.0
