"""An alias move with its audit event and webhook enqueue (issue #18: p99 <= 20 ms), on a real
`tracklet server` with API keys:

    python benchmarks/registry_move.py                  # 500 moves over HTTP, SQLite store
    python benchmarks/registry_move.py --moves 2000 --store postgresql://...

A fresh server (its admin made with `tracklet admin create-user`) gets one registry collection
``model/bench`` of two versions (an online run's ``link_model``) and an automation listening to
``alias.moved`` (so each move enqueues a delivery: its outbox row is what the worker turns into a
webhook). Then ``--moves`` times ``PUT .../aliases/canary`` alternately to v0 and v1 over one
keep-alive connection: each is the route's role check and lookups, then one transaction holding
the alias row, its history event, the ``alias.moved`` outbox row and the request's audit event,
and one COMMIT. Wall-clock per request, p50/p99 in ms, with the load average beside them (the
machine is shared: a p99 measures waiting for a core as much as the move), and the CPU time the
server process spent per move (user + system: what the move costs, whatever the load), beside
its delivery process's (the webhooks, sent from a process of their own).

``--checkpoint commit`` gives the server SQLite's defaults: a checkpoint in the COMMIT that takes
the log past 1,000 pages (about one move in 35-50 pays it) and writers that meet each other's
lock wait in SQLite's busy handler. ``thread`` (the server's default since session 12) makes its
writers queue on a write gate (``server/write_gate.py``) and checkpoints in a thread of its own
(``server/wal_checkpoint.py``): the A/B of that part of the p99.

``--trace`` runs the server under ``strace`` and says which waits the slowest moves overlap:
SQLite's busy-handler sleeps, checkpoint fsyncs, waits at the write gate, in the server or its
delivery process (``benchmarks/registry_trace.py``).

``--receiver`` points the rule at a webhook receiver in this process that answers 204 to every
delivery (the default points it at a closed port: every delivery fails and is retried later), so
the delivery process sends and logs each move's webhook while the moves go on; the benchmark then
waits until every move's delivery arrived and says how many did.

``--in-process`` also times the same transaction without HTTP (``ModelRegistry.set_alias`` over
the server's database with the server's hooks), to separate the database's part from the web
stack's.
"""

from __future__ import annotations

import argparse
import http.server
import os
import threading
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks import registry_trace  # noqa: E402
from benchmarks.report import print_table, write_json  # noqa: E402
from tracklet.server import wal_checkpoint  # noqa: E402

THREAD_NAME = getattr(wal_checkpoint, "THREAD_NAME", "tracklet-ckpt")  # code before session 12 names none


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


class Receiver:
    """A webhook receiver answering 204 to every POST, counting the ``alias.moved`` deliveries."""

    def __init__(self) -> None:
        self.moves: set[str] = set()  # the deliveries' idempotency keys (a retry repeats one)
        self.posts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.posts += 1
                receiver.moves.add(self.headers.get("idempotency-key") or f"post-{receiver.posts}")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=500)
    parser.add_argument("--store", default=None, help="a PostgreSQL URL (default: the server's SQLite)")
    parser.add_argument("--in-process", action="store_true", help="also time the transaction without HTTP")
    parser.add_argument("--rule-event", default="alias.moved",
                        help="the webhook rule's event (another one, e.g. run.alert: no delivery per move)")
    parser.add_argument("--delivery", choices=("process", "thread"), default="process",
                        help="where the server sends webhooks (tracklet server --webhook-delivery)")
    parser.add_argument("--checkpoint", choices=("thread", "commit"), default="thread",
                        help="SQLite: a write gate and WAL checkpoints in the server's own thread (the default), or "
                             "SQLite's own: checkpoints in the COMMIT that passes 1,000 pages, busy-handler waits "
                             "(TRACKLET_SERVER_WAL_CHECKPOINT=commit)")
    parser.add_argument("--trace", action="store_true",
                        help="run the server under strace: the waits the slowest moves overlap (registry_trace.py)")
    parser.add_argument("--trace-log", type=Path, default=None, help="with --trace: keep strace's log there")
    parser.add_argument("--receiver", action="store_true",
                        help="point the rule at a receiver answering 204 (default: a closed port, deliveries fail)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    receiver = Receiver() if args.receiver else None

    import tracklet
    from serverproc import Server  # type: ignore[import-not-found,unused-ignore]  # tests/, on sys.path

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "server"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        admin = subprocess.run([sys.executable, "-m", "tracklet", "admin", "--dir", str(root),
                                *(["--store", args.store] if args.store else []), "create-user", "root", "--admin"],
                               env=env, capture_output=True, text=True, timeout=120, check=True).stdout.strip()
        os.environ["TRACKLET_SERVER_WAL_CHECKPOINT"] = args.checkpoint  # read by the server process
        server = Server(root, store=args.store, dev=False, extra=("--webhook-delivery", args.delivery))
        trace_log = args.trace_log or Path(tmp) / "strace.log"
        if args.trace:
            server.args = [*registry_trace.command(trace_log), *server.args]
        spans: list[tuple[float, float]] = []
        groups: dict[str, set[int]] = {}
        try:
            server.spawn()
            server.wait_ready(timeout=180)  # a loaded machine starts a server slowly
            headers = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=60) as http:
                made = http.post("/automations", json={"name": "hook", "event": args.rule_event, "action": "webhook",
                                                       "url": receiver.url if receiver else "http://127.0.0.1:9/nowhere"})
                assert made.status_code == 201, made.text
                run = tracklet.init(project="bench", dir=str(Path(tmp) / "client"), mode="online",
                                    settings={"base_url": server.url, "api_key": admin, "console": "off",
                                              "system_metrics": False, "capture_environment": False})
                model = Path(tmp) / "model.pt"
                for weights in (b"one", b"two"):
                    model.write_bytes(weights)
                    run.link_model(model, registered_model_name="bench")
                run.finish()
                path = "/registries/model/collections/bench/aliases/canary"
                assert http.put(path, json={"version": "v0"}).status_code == 200  # warm-up
                times = []
                load_before = os.getloadavg()[0]
                assert server.proc is not None
                process = psutil.Process(server.proc.pid)
                if args.trace:  # strace's child is the server
                    (process,) = process.children()
                deliverers = [child for child in process.children() if "spawn_main" in " ".join(child.cmdline())]
                cpu_before = sum(process.cpu_times()[:2])
                delivery_before = sum(sum(child.cpu_times()[:2]) for child in deliverers)
                for n in range(args.moves):
                    began, started = time.time(), time.perf_counter()
                    answer = http.put(path, json={"version": f"v{(n + 1) % 2}", "reason": "bench"})
                    times.append((time.perf_counter() - started) * 1000)
                    spans.append((began, began + times[-1] / 1000))
                    assert answer.status_code == 200 and answer.json()["event"] is not None, answer.text
                cpu = (sum(process.cpu_times()[:2]) - cpu_before) * 1000 / args.moves
                delivery_cpu = (sum(sum(child.cpu_times()[:2]) for child in deliverers) - delivery_before) * 1000 \
                    / args.moves
                load = (load_before + os.getloadavg()[0]) / 2
                delivered = None
                if receiver is not None:  # every move's webhook arrives, and the warm-up's; a bounded wait
                    deadline = time.monotonic() + 120
                    while len(receiver.moves) < args.moves + 1 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    delivered = len(receiver.moves) - 1  # the warm-up move's is not one of the moves timed
                    delivery_cpu = (sum(sum(child.cpu_times()[:2]) for child in deliverers) - delivery_before) * 1000 \
                        / args.moves
                threads = {thread.id for thread in process.threads()}
                checkpoint = {tid for tid in threads if registry_trace.thread_name(process.pid, tid) == THREAD_NAME}
                groups = {"server requests": threads - checkpoint, "server checkpoint thread": checkpoint,
                          "delivery process": {thread.id for child in deliverers for thread in child.threads()}}
                hook = "a receiver answering 204" if receiver else "a closed port"
                results[f"HTTP PUT alias, rule on {args.rule_event} to {hook}, delivery in a {args.delivery}, "
                        f"checkpoints in {args.checkpoint}"] = {
                    "p50_ms": statistics.median(times), "p99_ms": p99(times), "cpu_ms": cpu,
                    "delivery_cpu_ms": delivery_cpu, "load": load,
                    **({"delivered": delivered} if delivered is not None else {})}
                events = http.get("/audit", params={"action": "set_alias", "limit": 10_000}).json()["events"]
                assert len(events) == args.moves + 1, len(events)
        finally:
            if args.trace and server.proc is not None:  # the server, then strace once it has nothing left to follow
                for child in psutil.Process(server.proc.pid).children():
                    child.terminate()
            server.stop()
            if receiver is not None:
                receiver.close()
        if args.trace:
            waits = registry_trace.analyse(registry_trace.parse(trace_log), groups, spans)
            print_table([(name, value) for name, value in waits.items()], ("waits during the moves (strace)", ""))
            results["trace"] = waits
        if args.in_process:
            results["in process: set_alias transaction"] = _in_process(root, args.store, args.moves)
    rows = [(name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['cpu_ms']:.2f}",
             f"{r['delivery_cpu_ms']:.2f}" if "delivery_cpu_ms" in r else "-", f"{r['load']:.1f}",
             "target p99 <= 20 ms") for name, r in results.items() if name != "trace"]
    print_table(rows, ("alias move", "p50 ms", "p99 ms", "server CPU ms/move", "delivery process CPU ms/move",
                       "load avg", ""))
    for name, r in results.items():
        if "delivered" in r:
            print(f"{name}: {int(r['delivered'])} of {args.moves} moves' webhooks delivered (204)")
    write_json(args.json, results)


def _in_process(root: Path, store_url: str | None, moves: int) -> dict[str, float]:
    """The route's transaction without HTTP: the server's registry with its hooks (the outbox row,
    an audit event inserted in the transaction as ``record_in`` does)."""
    from tracklet.registry.sql import ModelRegistry
    from tracklet.server.audit import _insert
    from tracklet.server.events import registry_event
    from tracklet.store import Store

    store = Store(store_url or f"sqlite:///{root / 'store.sqlite'}", root=root)

    def audited(connection, kinds) -> None:
        _insert(connection, {"actor": "root", "action": "set_alias", "method": "PUT", "status": 200,
                             "outcome": "ok", "target": "registries/model/collections/bench/aliases/canary"})

    registry = ModelRegistry(store.engine, on_event=registry_event, on_write=audited)
    registry.set_alias("model", "bench", "canary", "v0", actor="root")
    times = []
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    for n in range(moves):
        started = time.perf_counter()
        registry.set_alias("model", "bench", "canary", f"v{(n + 1) % 2}", actor="root", reason="bench")
        times.append((time.perf_counter() - started) * 1000)
    cpu = (time.process_time() - cpu_before) * 1000 / moves
    store.close()
    return {"p50_ms": statistics.median(times), "p99_ms": p99(times), "cpu_ms": cpu,
            "load": (load_before + os.getloadavg()[0]) / 2}


if __name__ == "__main__":
    main()
