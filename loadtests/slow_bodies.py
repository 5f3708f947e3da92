"""Slow bodies from many addresses, and /healthz from another: how long does /healthz take?

    python loadtests/slow_bodies.py [BASE_REF] [--connections 2500] [--addresses 100]
                                    [--probes 60] [--warmup 5]

N connections from `addresses` loopback addresses (127.0.3.x, so under the per-client cap)
each send a request head and then one byte of body a second; when the server cuts one off it
comes straight back, so the flood stays N strong. Meanwhile one client from 127.0.0.1 asks for
/healthz `probes` times in a row: p50/p90/max of its answers (a probe that gets no answer in
30 s counts as 30 s). The API runs as `make run` runs it (2 gevent workers of 1,000 places,
no proxy). With BASE_REF, that commit is measured first, then this tree, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

from compare import worktree
from harness import ROOT, VAR, percentile
from stack import start_stack

OUT = VAR / "slow-bodies"
PROBE_TIMEOUT_S = 30.0
HEAD = (
    b"POST /users/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", help="a commit to measure side by side")
    parser.add_argument("--connections", type=int, default=2500)
    parser.add_argument("--addresses", type=int, default=100)
    parser.add_argument("--probes", type=int, default=60)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of flood first")
    return parser.parse_args(argv)


async def slow_body(port: int, source: str, stop: asyncio.Event, cut: list[int]) -> None:
    """One flooding client: a head, then a byte a second; back at once when cut off."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(HEAD)
            answer = asyncio.ensure_future(reader.read(64))
            while not stop.is_set() and not answer.done():
                await asyncio.wait([answer], timeout=1.0)
                if not answer.done():
                    writer.write(b" ")
            if answer.done():
                cut[0] += 1
            else:
                answer.cancel()
        except OSError:
            cut[0] += 1
        finally:
            writer.close()


def probe(port: int) -> float:
    """Seconds until /healthz answers (PROBE_TIMEOUT_S if it does not)."""
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
    except OSError:
        ok = False
    return time.perf_counter() - started if ok else PROBE_TIMEOUT_S


async def flood_and_probe(port: int, args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    cut = [0]
    sources = [f"127.0.3.{n % args.addresses + 1}" for n in range(args.connections)]
    clients = [asyncio.ensure_future(slow_body(port, src, stop, cut)) for src in sources]
    await asyncio.sleep(args.warmup)
    loop = asyncio.get_running_loop()
    times = [await loop.run_in_executor(None, probe, port) for _ in range(args.probes)]
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    return {
        "healthz_p50_s": round(percentile(times, 50), 3),
        "healthz_p90_s": round(percentile(times, 90), 3),
        "healthz_max_s": round(max(times), 3),
        "healthz_unanswered": sum(1 for t in times if t >= PROBE_TIMEOUT_S),
        "flood_connections_cut": cut[0],
    }


def measure(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    stack = start_stack(OUT / f"stack-{tree.name}", with_supervisor=False, code_root=tree)
    try:
        port = int(stack.url.rsplit(":", 1)[1])
        return asyncio.run(flood_and_probe(port, args))
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    sides = {"before": worktree(args.base)} if args.base else {}
    sides["after" if args.base else "this tree"] = ROOT
    results = {}
    for name, tree in sides.items():
        print(f"[slow-bodies] {name} ({tree.name}): {args.connections} connections", flush=True)
        results[name] = measure(tree, args)
        print(f"[slow-bodies] {name}: {results[name]}", flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
