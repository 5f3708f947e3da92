"""Start and stop the local MongoDB wire-protocol server (SecantusDB) for development and tests.

SecantusDB is a development dependency (GPL-2.0-only): it always runs as a separate process and
is never imported by `api`, `queue_worker` or `supervisor`.

    python scripts/localdb.py start [--port N] [--data-dir var/db]   # runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

ROOT = Path(__file__).resolve().parent.parent
SERVER_BIN = Path(sys.executable).parent / "secantusd-py"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class LocalDB:
    """A running local server: its process, port, data directory and connection URI."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def uri(self, database: str = "app") -> str:
        """The URI every local use connects with. retryWrites=false: this server keeps a record
        of each retryable write for 30 minutes and scans (and past 10,000, sorts) all of them on
        every write, so after ~10,000 writes each write costs ~4.5 ms instead of ~0.5 ms
        (docs/local-database.md). A single local server has no failover for a retry to ride
        out; production URIs keep pymongo's default (on)."""
        return f"mongodb://127.0.0.1:{self.port}/{database}?directConnection=true&retryWrites=false"

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it outlives the stop timeout."""
        stop_process(self.process)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Return True if nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start(
    port: int | None = None,
    data_dir: Path | None = None,
    log_path: Path | None = None,
) -> LocalDB:
    """Start a server on `port` (free if None) with its own data directory; wait for `ping`."""
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise RuntimeError(
            f"port {port} is already in use: stop what listens there or pick another"
        )
    data_dir = data_dir or ROOT / "var" / f"db-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir.parent / f"{data_dir.name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                str(SERVER_BIN),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                str(data_dir),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
    db = LocalDB(process=process, port=port, data_dir=data_dir)
    try:
        wait_for_ping(db.uri(), process, START_TIMEOUT_S)
        if process.poll() is not None:  # something else answered on our port
            raise RuntimeError(f"local database exited with code {process.returncode}")
    except BaseException:
        db.kill()
        raise
    return db


def wait_for_ping(uri: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Poll `ping` until the server answers; fail early if its process exits."""
    deadline = time.monotonic() + timeout_s
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=250)
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"local database exited with code {process.returncode}")
            try:
                client.admin.command("ping")
                return
            except PyMongoError as exc:
                if time.monotonic() > deadline:
                    message = f"local database did not answer ping in {timeout_s}s"
                    raise TimeoutError(message) from exc
                time.sleep(0.1)
    finally:
        client.close()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM a process, wait up to `timeout_s`, then SIGKILL it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def catch_stop_signals() -> Callable[[], bool]:
    """Turn SIGINT and SIGTERM into a flag; return a function that reads it."""
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    return lambda: bool(caught)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("start", help="start a server and keep it running until interrupted")
    run.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    run.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: var/db-PORT)"
    )
    args = parser.parse_args(argv)
    db = start(args.port, args.data_dir)
    print(db.uri(), flush=True)
    stop_requested = catch_stop_signals()
    while not stop_requested() and db.process.poll() is None:
        time.sleep(0.2)
    db.stop()
    return 0 if stop_requested() else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
