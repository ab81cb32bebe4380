"""Ingest rate of one `tracklet server` process with 8 concurrent clients (issue #6).

    python benchmarks/server.py [--clients 8] [--steps 100000] [--store URL] [--keys]

Writes one run per client (``--steps`` rows of 10 floats, as large history records), starts a
real server process on a free loopback port, then runs ``tracklet sync`` for every run at once,
each in its own process, and reports the points per second acknowledged (durable on the server
and indexed into its store) from the first request to the last acknowledgement. ``--keys``
runs the server with API keys (an admin made with ``tracklet admin``) instead of ``--dev``, to
show what authenticating every request costs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from store import write_run  # noqa: E402  (benchmarks/store.py: a record log written directly)

KEYS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited before it answered")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not answer in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--store", default=None, help="the server's store URL (default: SQLite in its data root)")
    parser.add_argument("--keys", action="store_true", help="require API keys (default: --dev, no keys)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as scratch:
        client_root, server_root = Path(scratch) / "client", Path(scratch) / "server"
        points = sum(write_run(client_root, "bench", f"c{n}", args.steps, KEYS, seed=n) for n in range(args.clients))
        size = sum(p.stat().st_size for p in client_root.rglob("run.tlog"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "tracklet", "server", "--dir", str(server_root), "--port", str(port)]
        if args.store:
            command += ["--store", args.store]
        if args.keys:
            admin = [sys.executable, "-m", "tracklet", "admin", "--dir", str(server_root),
                     *(["--store", args.store] if args.store else []), "create-user", "bench", "--admin"]
            made = subprocess.run(admin, env=env, capture_output=True, text=True, check=True)
            env = {**env, "TRACKLET_API_KEY": made.stdout.strip()}
        else:
            command.append("--dev")
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_ready(url, server)
            started = time.perf_counter()
            clients = [
                subprocess.Popen(
                    [sys.executable, "-m", "tracklet", "--dir", str(client_root), "sync", "-q", "--url", url,
                     f"bench/c{n}"],
                    env=env, stdout=subprocess.DEVNULL,
                )
                for n in range(args.clients)
            ]
            codes = [client.wait() for client in clients]
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(30)
        if any(codes):
            print(f"a client failed: exit codes {codes}")
            return 1
        identical = all(
            (server_root / p.relative_to(client_root)).read_bytes() == p.read_bytes()
            for p in client_root.rglob("run.tlog")
        )
    mode = "API keys" if args.keys else "--dev, no keys"
    print(f"{args.clients} clients x {args.steps:,} steps x {KEYS} floats = {points:,} points, "
          f"{size / 2**20:.1f} MiB of record log ({mode})")
    print(f"acknowledged (durable and indexed) in {elapsed:.2f} s: {points / elapsed:,.0f} points/s, "
          f"{size / 2**20 / elapsed:.1f} MiB/s; server copies byte-identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
