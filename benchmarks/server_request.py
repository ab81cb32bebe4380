"""The tracking server's fixed cost per request: server CPU and client latency of small requests
on a real `tracklet server` process with API keys, this checkout against another one in the same run:

    python benchmarks/server_request.py                               # this checkout only
    python benchmarks/server_request.py --baseline /tmp/old            # A/B: DIR's tracklet beside this one
    python benchmarks/server_request.py --requests 1000 --kinds heartbeat,otlp_span
    python benchmarks/server_request.py --py-spy /tmp/alias.svg --kinds alias_move   # profile this checkout's server
    python benchmarks/server_request.py --baseline /tmp/old --http h11               # this checkout's server on h11
    python benchmarks/server_request.py --baseline /tmp/old --callgrind /tmp/cg --requests 100   # instructions

(``/tmp/old`` made with ``git archive main | tar -x -C /tmp/old``.) Each checkout runs its own server
(``python -m tracklet server`` with its own ``PYTHONPATH`` and working directory, so ``python -m`` imports
that checkout's ``tracklet``), with an admin made by its own ``tracklet admin create-user``, a project
``bench`` holding one online run that linked two model versions into ``model/bench``, and a sweep
with one leased trial. Then, kind after kind, both servers get ``--requests`` requests in chunks of
``--chunk``, the servers alternating chunk by chunk (so a change of the machine's load hits both
arms alike), over one kept-alive connection each, one request at a time:

- ``health``: ``GET /api/v1/health``, no key: uvicorn, the middleware and routing, nothing else;
- ``get_run``: ``GET /api/v1/runs/bench/<id>``: key and role lookups, one store read, a response model;
- ``heartbeat``: a sweep trial's ``POST .../heartbeat`` (reads its lease; writes only past a quarter of it);
- ``otlp_span``: ``POST /v1/traces`` with one span (OTLP protobuf, the SDK's own encoder), a new span each time;
- ``alias_move``: ``PUT /api/v1/registries/model/collections/bench/aliases/canary``, v0 and v1 in turn:
  one transaction with the alias, its history event and the audit event.
- ``log_append``: ``PUT /api/v1/runs/bench/<id>/log?offset=N``, the next ~2 KiB of whole frames of a
  record log written beforehand (``benchmarks/store.write_run``, 8 rows of 3 floats a record): an
  online run's upload, with its audit intent, the append, indexing its records and their events.

Reported per kind and checkout: the server process's CPU time per request (user + system from
``psutil``, everything the process did while the chunk ran: the point of comparison, whatever
the machine's load) and the client's round trip p50/p99 (wall clock: meaningful only beside the
load average, which is printed). ``--py-spy FILE`` records this checkout's server with py-spy
(``--format`` from the file's suffix: ``.svg`` flame graph, ``.txt`` collapsed stacks,
``.json`` speedscope) while it answers ``--kinds``. ``--callgrind DIR`` runs each server under
valgrind's callgrind (``PYTHONHASHSEED=0``) and reports the instructions the server process executed
per request (all its threads, zeroed before and dumped after each chunk with ``callgrind_control``):
a figure the machine's load doesn't move.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks.report import print_table, write_json  # noqa: E402

KINDS = ("health", "get_run", "heartbeat", "otlp_span", "alias_move", "log_append")
LOG_PIECE = 2048  # log_append: record log bytes per request (whole frames), as an online run's sender sends them
ALIAS = "/api/v1/registries/model/collections/bench/aliases/canary"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * 0.99 + 0.5) - 1))]


def span_bodies(count: int) -> list[bytes]:
    """``count`` OTLP/protobuf bodies of one span each, as the OpenTelemetry SDK's exporter encodes
    them (``encode_spans``): a chat span with GenAI attributes, each with its own ids."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    finished: list[Any] = []

    class Keep(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            finished.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("bench.agent", "1.0")
    for number in range(count):
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o", "gen_ai.response.id": f"chatcmpl-{number}",
                                 "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30})
    provider.shutdown()
    return [encode_spans([span]).SerializeToString() for span in finished]


@dataclass
class Arm:
    """One checkout's server and what its requests need."""

    name: str
    tree: Path
    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    server_args: tuple[str, ...] = ()
    callgrind: Path | None = None  # run the server under callgrind, dumps here
    instructions: dict[str, int] = field(default_factory=dict)
    key: str = ""
    run_id: str = ""
    sweep: str = ""
    lease: dict[str, Any] = field(default_factory=dict)
    spans: Iterator[bytes] = field(default_factory=lambda: iter(()))
    moves: Iterator[int] = field(default_factory=lambda: itertools.cycle((1, 0)))
    log: bytes = b""  # log_append: the record log sent, whole frames of about LOG_PIECE at a time
    log_id: str = ""
    log_cuts: Iterator[int] = field(default_factory=lambda: iter(()))  # where each request's body ends
    log_offset: int = 0
    http: httpx.Client | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree), **({"PYTHONHASHSEED": "0"} if self.callgrind else {})}

    def start(self, log: Path) -> None:
        """The admin (this checkout's CLI), then the server; waits until it answers."""
        self.key = subprocess.run([sys.executable, "-m", "tracklet", "admin", "--dir", str(self.root), "create-user",
                                   "root", "--admin"], env=self.env(), cwd=self.tree, capture_output=True, text=True,
                                  timeout=300, check=True).stdout.strip()
        with log.open("ab") as stderr:
            # cwd too: `python -m` puts the working directory first on sys.path.
            valgrind = ([] if self.callgrind is None else
                        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                         f"--callgrind-out-file={self.callgrind / self.name}.%p"])
            self.proc = subprocess.Popen([*valgrind, sys.executable, "-m", "tracklet", "server", "--dir", str(self.root),
                                          "--port", str(self.port), *self.server_args], env=self.env(), cwd=self.tree,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + (1800 if self.callgrind else 300)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}'s server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name}'s server did not answer")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120)

    def prepare(self, scratch: Path, spans: list[bytes]) -> None:
        """A run with two linked model versions, a sweep with a leased trial (this checkout's client)."""
        import tracklet

        assert self.http is not None
        run = tracklet.init(project="bench", dir=str(scratch / f"client-{self.name}"), mode="online",
                            settings={"base_url": self.url, "api_key": self.key, "console": "off",
                                      "system_metrics": False, "capture_environment": False})
        model = scratch / f"model-{self.name}.pt"
        for weights in (b"one", b"two"):
            model.write_bytes(weights)
            run.link_model(model, registered_model_name="bench")
        run.log({"loss": 1.0})
        self.run_id = run.id
        run.finish()
        config = {"method": "random", "metric": {"name": "f", "goal": "minimize"},
                  "parameters": {"x": {"min": 0.0, "max": 1.0}}}
        made = self.http.post("/api/v1/projects/bench/sweeps", json={"config": config})
        assert made.status_code in (200, 201), made.text
        self.sweep = made.json()["id"]
        lease = self.http.post(f"/api/v1/projects/bench/sweeps/{self.sweep}/next",
                               json={"agent": "a0", "ttl": 3600}).json()["lease"]
        self.lease = {"trial": lease["trial"], "agent": "a0", "ttl": 3600}
        assert self.http.put(ALIAS, json={"version": "v0"}).status_code == 200
        self.spans = iter(spans)
        self.log_id = "appended"
        self.log, cuts = record_log(scratch / f"log-{self.name}", self.log_id)
        self.log_cuts = iter(cuts)

    def send(self, kind: str) -> None:
        http = self.http
        assert http is not None
        if kind == "health":
            answer = http.get("/api/v1/health")
        elif kind == "get_run":
            answer = http.get(f"/api/v1/runs/bench/{self.run_id}")
        elif kind == "heartbeat":
            answer = http.post(f"/api/v1/projects/bench/sweeps/{self.sweep}/heartbeat", json=self.lease)
        elif kind == "otlp_span":
            answer = http.post("/v1/traces", content=next(self.spans),
                               headers={"content-type": "application/x-protobuf", "x-tracklet-project": "bench"})
        elif kind == "alias_move":
            answer = http.put(ALIAS, json={"version": f"v{next(self.moves)}", "reason": "bench"})
        elif kind == "log_append":
            end = next(self.log_cuts, None)
            if end is None:
                raise RuntimeError(f"{self.name} log_append: the prepared log is used up ({len(self.log)} bytes)")
            answer = http.put(f"/api/v1/runs/bench/{self.log_id}/log", params={"offset": self.log_offset},
                              content=self.log[self.log_offset:end])
            self.log_offset = end
        else:
            raise ValueError(kind)
        if answer.status_code != 200:
            raise RuntimeError(f"{self.name} {kind}: {answer.status_code} {answer.text[:300]}")

    def chunk(self, kind: str, count: int) -> None:
        """``count`` requests of ``kind``: their round trips, and the server's CPU over them."""
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        times = self.times.setdefault(kind, [])
        if self.callgrind is not None:
            subprocess.run(["callgrind_control", "--instr=on", str(self.proc.pid)], check=True, capture_output=True)
            self._callgrind("--zero")
        before = process.cpu_times()
        for _ in range(count):
            started = time.perf_counter()
            self.send(kind)
            times.append((time.perf_counter() - started) * 1000)
        after = process.cpu_times()
        self.cpu[kind] = self.cpu.get(kind, 0.0) + (after.user - before.user) + (after.system - before.system)
        if self.callgrind is not None:
            subprocess.run(["callgrind_control", "--instr=off", str(self.proc.pid)], check=True, capture_output=True)
            self.instructions[kind] = self.instructions.get(kind, 0) + self._callgrind("--dump")

    def _callgrind(self, command: str) -> int:
        """``callgrind_control command`` on the server; after a dump, the instructions it counted."""
        assert self.proc is not None and self.callgrind is not None
        known = set(self.callgrind.glob(f"{self.name}.*"))
        subprocess.run(["callgrind_control", command, str(self.proc.pid)], check=True, capture_output=True)
        if command != "--dump":
            return 0
        for _ in range(600):
            new = sorted(set(self.callgrind.glob(f"{self.name}.*")) - known)
            if new and any(line.startswith("summary:") for line in new[0].read_text(errors="replace").splitlines()):
                return _instructions(new[0])
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: callgrind wrote no dump")

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _instructions(dump: Path) -> int:
    """The instructions a callgrind dump counts: the sum of its self costs (its ``summary:`` line
    came out wrapped below zero after ``--zero`` with instrumentation toggled); the line after a
    ``calls=`` line is the call's inclusive cost, already counted in the callee."""
    total = 0
    after_call = False
    for line in dump.read_text(errors="replace").splitlines():
        if after_call:
            after_call = False
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                total += int(parts[1])
    return total


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into ``out`` until it gets SIGINT."""
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "500", "--format", fmt,
                             "--output", str(out), "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def record_log(root: Path, run_id: str, steps: int = 400_000) -> tuple[bytes, list[int]]:
    """A run's record log (``steps`` rows of 3 floats, 8 a record) for ``log_append``, and where
    each request's body ends (the server takes whole frames: about LOG_PIECE each)."""
    from store import upload_ends, write_run

    from tracklet.core.layout import RunPaths

    write_run(root, "bench", run_id, steps, 3, rows_per_record=8)
    data = RunPaths(root, "bench", run_id).log_file.read_bytes()
    return data, upload_ends(data, LOG_PIECE)


def measure(arms: list[Arm], kinds: list[str], requests: int, chunk: int, warmup: int,
            on_kind: Callable[[str, bool], None] | None = None) -> float:
    """Every kind on every arm, alternating arms chunk by chunk; the mean load average."""
    loads = [os.getloadavg()[0]]
    for kind in kinds:
        for arm in arms:
            for _ in range(warmup):
                arm.send(kind)
        if on_kind is not None:
            on_kind(kind, True)
        for number in range(max(1, requests // chunk)):
            order = arms if number % 2 == 0 else arms[::-1]
            for arm in order:
                arm.chunk(kind, chunk)
        if on_kind is not None:
            on_kind(kind, False)
        loads.append(os.getloadavg()[0])
    return statistics.mean(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per kind and checkout")
    parser.add_argument("--chunk", type=int, default=50, help="requests in a row before the other checkout's turn")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout measured beside this one")
    parser.add_argument("--py-spy", type=Path, default=None, help="record this checkout's server with py-spy here")
    parser.add_argument("--http", default=None, choices=("auto", "httptools", "h11"),
                        help="this checkout's server's HTTP implementation (`tracklet server --http`; default: its own)")
    parser.add_argument("--callgrind", type=Path, default=None,
                        help="run the servers under callgrind (dumps in DIR): instructions per request")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}: pick from {', '.join(KINDS)}")
    per_arm = args.warmup + max(1, args.requests // args.chunk) * args.chunk + 10
    spans = span_bodies(per_arm) if "otlp_span" in kinds else []
    with tempfile.TemporaryDirectory(prefix="tracklet-bench-request-") as tmp:
        scratch = Path(tmp)
        if args.callgrind is not None:
            args.callgrind.mkdir(parents=True, exist_ok=True)
        arms = [Arm("new", ROOT, scratch / "new", server_args=("--http", args.http) if args.http else (),
                    callgrind=args.callgrind)]
        if args.baseline is not None:
            arms.append(Arm("old", args.baseline.resolve(), scratch / "old", callgrind=args.callgrind))
        recorder: list[subprocess.Popen[bytes]] = []
        try:
            for arm in arms:
                arm.start(scratch / f"{arm.name}.stderr")
                arm.prepare(scratch, spans)

            def on_kind(kind: str, starting: bool) -> None:
                if args.py_spy is None:
                    return
                if starting and not recorder:
                    assert arms[0].proc is not None
                    recorder.append(py_spy(arms[0].proc.pid, args.py_spy.resolve()))
                    time.sleep(1.0)  # py-spy attaches
                elif not starting and kind == kinds[-1] and recorder:
                    recorder[0].send_signal(signal.SIGINT)
                    recorder[0].wait(timeout=60)

            load = measure(arms, kinds, args.requests, args.chunk, args.warmup, on_kind)
        finally:
            for arm in arms:
                arm.stop()
    results: dict[str, Any] = {"load": load, "cores": os.cpu_count(), "http": args.http, "kinds": {}}
    rows = []
    for kind in kinds:
        per = {}
        for arm in arms:
            times = arm.times[kind]
            per[arm.name] = {"cpu_ms": arm.cpu[kind] * 1000 / len(times), "p50_ms": statistics.median(times),
                             "p99_ms": _p99(times), "requests": len(times)}
            if args.callgrind is not None:
                per[arm.name]["instructions"] = arm.instructions[kind] / len(times)
        results["kinds"][kind] = per
        new = per["new"]
        ratio = f"{new['cpu_ms'] / per['old']['cpu_ms']:.2f}" if "old" in per and per["old"]["cpu_ms"] else ""
        if args.callgrind is not None:
            counts = " / ".join(f"{per[arm.name]['instructions'] / 1e6:.2f}M" for arm in arms)
            ratio += f"; instructions {counts}"
            if "old" in per:
                ratio += f" ({per['new']['instructions'] / per['old']['instructions']:.2f})"
        rows.append((kind, *(f"{per[arm.name]['cpu_ms']:.2f}" for arm in arms), ratio,
                     *(f"{per[arm.name]['p50_ms']:.2f} / {per[arm.name]['p99_ms']:.2f}" for arm in arms)))
    header = ("request", *(f"{arm.name} CPU ms" for arm in arms), "new/old" if len(arms) > 1 else "",
              *(f"{arm.name} p50 / p99 ms" for arm in arms))
    print(f"server CPU per request and round trip; {args.requests} requests per kind and checkout, "
          f"load average {load:.1f} on {os.cpu_count()} cores" + (f"; this checkout on --http {args.http}" if args.http else ""))
    print_table(rows, header)
    if args.py_spy is not None:
        print(f"py-spy profile of this checkout's server: {args.py_spy}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
