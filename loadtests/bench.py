"""`make bench`: the benchmark suite, side by side in one session.

The queue systems (ours, the raw loop, the peers) share one local database server; the API
sections get a fresh one, because the local server slows down over long runs.

    python loadtests/bench.py [--jobs 1000] [--workers N] [--concurrency 4] [--only drain,...]

Sections (all by default; pick with --only):
  drain   N no-op jobs drained through `python -m supervisor` vs queue_bench.py's raw
          claim+ack loop (ratio, target >= 0.8) and vs dramatiq-mongodb and huey-mongodb with the
          same N on the same server (installed by this script in var/bench-venv); database
          commands per job, counted client-side (mongodb_commands_total) at the default 4 slots
          and at 16 (a deep queue's batches)
  pickup  pickup latency on an idle queue, default wake-ups (change stream; p50/p99)
  dashboard  the drain with no dashboard open vs with 10 polling tabs, alternately, 3 times
          (dashboard_bench.py; target: no more than 10 % slower)
  storm   50 concurrent sign-ups whose welcome mails take 500 ms at a slow SMTP server:
          first request → last welcome-email job done (target <= 3.5 s), sign-up latency
  api     wrk: profile req/s and p99 at 50 connections, login/s vs the bcrypt limit, profile
          p99 during a login storm; database commands per login (login_bench.py)
  memory  RSS of the supervisor master, consumers, gunicorn master and workers after the runs
Writes a Markdown table to stdout and var/bench/results.json; the last stdout line is one JSON
object with every figure (queue_bench's jobs_per_s, raw_jobs_per_s, ratio_vs_raw, pickup_p50_ms,
pickup_p99_ms kept under their names).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import api_bench
import dashboard_bench
import login_bench
import queue_bench
import queue_side
from harness import VAR
from smtp_sink import SlowSmtpSink
from stack import cpu_count, start_stack

SECTIONS = ("drain", "pickup", "dashboard", "storm", "api", "memory")
OUT_DIR = VAR / "bench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="no-op jobs per drain (1000)")
    parser.add_argument("--workers", type=int, default=cpu_count(), help="consumer processes")
    parser.add_argument("--concurrency", type=int, default=4, help="slots per consumer (4)")
    parser.add_argument("--peer-processes", type=int, default=2, help="peer worker processes")
    parser.add_argument("--pickup-samples", type=int, default=30)
    parser.add_argument("--signups", type=int, default=50)
    parser.add_argument("--mail-delay", type=float, default=0.5, help="SMTP accept delay (s)")
    parser.add_argument("--storm-concurrency", type=int, default=16, help="slots per consumer")
    parser.add_argument("--bcrypt-cost", type=int, default=None, help="API_BCRYPT_COST (12)")
    parser.add_argument("--wrk-seconds", type=int, default=15)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma list of sections")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "results.json")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def machine() -> dict[str, Any]:
    """Describe the machine the numbers come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def run_queue_sections(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if "drain" in args.sections:
        queue_bench.progress(f"drain: ours through the supervisor, {args.jobs} jobs")
        figures.update(queue_side.our_drain(uri, args.jobs, args.workers, args.concurrency))
        for system in ("dramatiq", "huey"):
            queue_bench.progress(f"drain: {system}-mongodb, {args.jobs} jobs")
            peer = queue_side.peer_drain(system, uri, args.jobs, args.peer_processes)
            figures[f"{system}_jobs_per_s"] = peer["jobs_per_s"]
            figures[f"{system}_wall_s"] = peer["wall_s"]
        figures["peer_versions"] = queue_side.peer_versions()
        best_peer = max(figures["dramatiq_jobs_per_s"], figures["huey_jobs_per_s"])
        figures["ratio_vs_best_peer"] = round(figures["jobs_per_s"] / best_peer, 2)
        queue_bench.progress(
            f"drain: ours with 16 slots per consumer (round trips), {args.jobs} jobs"
        )
        deep = queue_side.our_drain(uri, args.jobs, args.workers, 16)
        figures["deep_commands_per_job"] = deep["commands_per_job"]
        figures["deep_jobs_per_s"] = deep["jobs_per_s"]
    if "pickup" in args.sections:
        queue_bench.progress(f"pickup: {args.pickup_samples} jobs into an idle queue")
        figures.update(
            queue_side.idle_pickup(uri, args.pickup_samples, args.workers, args.concurrency)
        )
    if "dashboard" in args.sections:
        queue_bench.progress("dashboard: the drain without and with 10 polling tabs")
        figures.update(
            dashboard_bench.dashboard_drain(uri, args.jobs, args.workers, args.concurrency)
        )
    return figures


def run_api_sections(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    wanted = {"storm", "api", "memory"} & set(args.sections)
    if not wanted:
        return {}
    figures: dict[str, Any] = {}
    with SlowSmtpSink(args.mail_delay) as sink:
        extra = {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port)}
        if args.bcrypt_cost is not None:
            extra["API_BCRYPT_COST"] = str(args.bcrypt_cost)
        queue_bench.progress("starting API (gunicorn) and supervisor")
        stack = start_stack(
            OUT_DIR / "stack",
            api_workers=cpu_count(),
            consumers=args.workers,
            concurrency=args.storm_concurrency,
            env_extra=extra,
            server_uri=uri,
            database=f"api_{datetime.now(UTC):%H%M%S}",
        )
        try:
            if "storm" in wanted:
                queue_bench.progress(f"storm: {args.signups} concurrent sign-ups")
                figures.update(api_bench.signup_storm(stack, args.signups))
                figures["mails_received"] = sink.handler.count()
                figures["storm_consumer_slots"] = args.workers * args.storm_concurrency
            if "api" in wanted:
                queue_bench.progress(f"api: wrk runs of {args.wrk_seconds}s")
                cost = args.bcrypt_cost or 12
                figures.update(api_bench.api_figures(stack, OUT_DIR, args.wrk_seconds, cost))
                accounts = [api_bench.new_account(stack.url)[:2] for _ in range(8)]
                figures.update(login_bench.commands_per_login(stack.url, stack.uri, accounts))
            if "memory" in wanted:
                figures.update(api_bench.memory(stack))
        finally:
            stack.stop()
    return figures


def table(figures: dict[str, Any]) -> str:
    """Render the figures as the README's Markdown table."""
    f = figures.get

    def row(name: str, value: Any, target: str = "") -> str:
        return f"| {name} | {value if value is not None else 'n/a'} | {target} |"

    rows = [
        "| benchmark | result | target / comparison |",
        "|---|---|---|",
        row("drain: ours via supervisor (jobs/s)", f("jobs_per_s"),
            f"{f('processes')} consumers x {f('concurrency')} slots, {f('jobs')} jobs"),
        row("drain: raw claim+ack loop (jobs/s)", f("raw_jobs_per_s"), "same server and N"),
        row("**ratio vs raw**", f("ratio_vs_raw"), ">= 0.8"),
        row("drain: dramatiq-mongodb (jobs/s)", f("dramatiq_jobs_per_s"), "2 procs x 8 threads"),
        row("drain: huey-mongodb (jobs/s)", f("huey_jobs_per_s"), "2 worker processes"),
        row("**ratio vs faster peer**", f("ratio_vs_best_peer"), ">= 3"),
        row("drain pickup p50 / p99 (ms, backlog)", _pair(f("pickup_p50_ms"), f("pickup_p99_ms"))),
        row("database commands per job (drain)", f("commands_per_job"),
            f"every process of the supervisor, start-up included; {f('concurrency')} slots"),
        row("database commands per job, 16 slots", f("deep_commands_per_job"), "<= 1.0"),
        row("idle pickup p50 / p99 (ms)", _pair(f("idle_pickup_p50_ms"), f("idle_pickup_p99_ms")),
            f"poll max {f('poll_max_s')} s"),
        row("drain with 10 dashboard tabs / without (jobs/s)",
            f"{f('dashboard_drain_with_jobs_per_s')} / {f('dashboard_drain_without_jobs_per_s')}"
            f" = {f('dashboard_drain_ratio')}", ">= 0.9"),
        row(f"{f('signups')} sign-ups: first request → last mail job (s)",
            f("first_request_to_last_email_s"), "<= 3.5 (the old service: ~52)"),
        row("sign-up latency p50 / p95 / max (ms)",
            f"{f('signup_p50_ms')} / {f('signup_p95_ms')} / {f('signup_max_ms')}",
            f"{f('signup_ok')} of {f('signups')} ok, {f('mails_received')} mails"),
        row("profile req/s at 50 conns", f("profile_req_per_s"),
            f">= 1,725 (1.5 x 1,150); wrk took {f('profile_wrk_cores')} cores"),
        row("profile p50 / p99 (ms)", _pair(f("profile_p50_ms"), f("profile_p99_ms")), "p99 <= 50"),
        row("login/s vs bcrypt limit", f"{f('login_per_s')} / {f('bcrypt_limit_per_s')}",
            f"cost {f('bcrypt_cost')}, check {f('bcrypt_check_ms')} ms"),
        row("database commands per login: API / server-wide",
            _pair(f("db_commands_per_login"), f("server_ops_per_login")), "API <= 3 + the ledger"),
        row("profile p99 during login storm (ms)", f("storm_profile_p99_ms"), "<= 100"),
        row("RSS master / consumers (MiB)",
            f"{f('supervisor_master_rss_mb')} / {f('consumer_rss_mb')}"),
        row("RSS API master / workers (MiB)",
            f"{f('api_master_rss_mb')} / {f('api_worker_rss_mb')}"),
    ]  # fmt: skip
    return "\n".join(rows)


def _pair(a: Any, b: Any) -> str:
    return f"{a} / {b}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"machine": machine(), "sections": args.sections, "errors": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, section in (("queue", run_queue_sections), ("api", run_api_sections)):
        # A fresh local server per group: it slows down over long runs (README, Local database),
        # and the queue group's hundreds of thousands of writes would weigh on the API figures.
        with queue_bench.database_server() as uri:
            # One broken section must not throw away the figures of the others.
            try:
                figures.update(section(uri, args))
            except Exception as exc:  # noqa: BLE001 - reported in the output and exit code
                figures["errors"][name] = f"{type(exc).__name__}: {exc}"
                queue_bench.progress(f"{name} sections failed: {exc}")
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    for name, error in figures["errors"].items():
        print(f"ERROR in {name}: {error}")
    print(json.dumps(figures), flush=True)
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
