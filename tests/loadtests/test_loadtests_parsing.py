"""Pure pieces of the load tools: wrk output, Locust thresholds, URIs, percentiles.

Locust itself is never imported here: it monkey-patches the whole process with gevent.
"""

from __future__ import annotations

from dataclasses import dataclass

import api_bench
from harness import DatabaseServer, percentile
from thresholds import Limits, breaches

WRK_OUTPUT = "\n".join(
    [
        "Running 2s test @ http://127.0.0.1:8000/users/profile",
        "  Latency Distribution",
        "     50%  174.31ms",
        "     90%  621.16ms",
        "     99%    1.29s ",  # wrk pads some values with a trailing space
        "  485 requests in 2.00s, 357.80KB read",
        "  Socket errors: connect 0, read 2, write 0, timeout 3",
        "  Non-2xx or 3xx responses: 7",
        "Requests/sec:    241.95",
    ]
)


def test_wrk_output_is_read_in_milliseconds_whatever_the_unit() -> None:
    """wrk's us/ms/s latencies (even with trailing spaces) become ms; errors are counted."""
    figures = api_bench.parse_wrk(WRK_OUTPUT)
    assert figures["req_per_s"] == 241.95
    assert figures["p50_ms"] == 174.31 and figures["p99_ms"] == 1290.0
    assert figures["requests"] == 485
    assert figures["non_2xx"] == 7 and figures["socket_errors"] == 5


@dataclass
class Entry:
    method: str
    name: str
    p95: float
    p99: float
    num_requests: int = 100

    def get_response_time_percentile(self, percent: float) -> float:
        return self.p95 if percent == 0.95 else self.p99


def test_thresholds_pass_a_clean_run_with_slow_but_bcrypt_bound_logins() -> None:
    """Fast endpoints and logins within their own (bcrypt) limits break nothing."""
    entries = [Entry("GET", "/users/profile", 20, 40), Entry("POST", "/users/login", 900, 1500)]
    assert breaches(Limits(), 200, 0.0, entries) == []


def test_thresholds_catch_slow_endpoints_slow_jobs_errors_and_empty_runs() -> None:
    """A slow p99, a slow end-to-end job, an error ratio above the limit or no traffic fail."""
    entries = [Entry("GET", "/users/profile", 20, 900), Entry("JOB", "bench.sleep", 4000, 5000)]
    found = breaches(Limits(), 200, 0.05, entries)
    assert any("error ratio" in line for line in found)
    assert any("/users/profile p99" in line for line in found)
    assert any("JOB bench.sleep p95" in line for line in found)
    assert breaches(Limits(), 0, 0.0, []) == ["no requests were made"]


def test_database_uri_keeps_host_and_options_and_swaps_the_database() -> None:
    """A run's own database name replaces the one in the server URI; options stay."""
    server = DatabaseServer(base_uri="mongodb://127.0.0.1:27017/app?directConnection=true")
    assert server.uri("chaos_1") == "mongodb://127.0.0.1:27017/chaos_1?directConnection=true"
    assert not server.restartable


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..10 is 5, p99 is 10, and an empty list gives 0."""
    values = [float(v) for v in range(10, 0, -1)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 99) == 10.0
    assert percentile([], 50) == 0.0
