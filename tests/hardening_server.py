"""Attacks on the tracking server and the store (issue #12), shared by the tests and
``benchmarks/attacks.py`` (see tests/hardening_logs.py for :class:`Outcome`): server kills
mid-ingest, auth bypass, path traversal, filter injection, stalled connections, huge key ids and
oversized uploads, NUL in every text on PostgreSQL.

``lost`` for the server: data lost or duplicated, a request let through that should have been
refused (a bypass, a file outside the root, a table changed by a filter); ``failed``: a 5xx, a
process that died, hung or grew past its memory bound.
"""

from __future__ import annotations

import gzip
import random
import re
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import MAGIC, frame
from tracklet.proto import records_pb2 as pb

from hardening_logs import QUIET, Outcome
from serverproc import Server, settled_rss

START_TIMEOUT = 180.0  # a server's start on a loaded 2-core machine can take tens of seconds


def record(root: Path, project: str, run_id: str, steps: int, flush_every: int = 500, **init: Any) -> bytes:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET, **init)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps})
        if step % flush_every == flush_every - 1:
            run.flush()
    run.finish()
    return RunPaths(root, project, run_id).log_file.read_bytes()


def _steps_once(http: httpx.Client, project: str, run_id: str, steps: int) -> bool:
    response = http.get(f"/api/v1/runs/{project}/{run_id}/history", params={"keys": "loss", "buckets": 0})
    return response.status_code == 200 and response.json()["series"][0]["steps"] == list(range(steps))


# ---------------------------------------------------------------- server killed mid-ingest


def server_kill_attack(root: Path, kills: int, store: str | None = None, runs: int | None = None,
                       steps: int = 20_000, seed: int = 12) -> Outcome:
    """``kills`` SIGKILLs of a real server while `SyncClient` uploads (at a seeded point of what
    is left; half of the kills also leave a torn frame, as a kill inside a write does), each
    followed by a restart; then every run is synced to the end. Lost: a copy that is not the
    local log byte for byte, or a step missing or twice in the server's history."""
    from tracklet.client.sync import SyncClient, SyncError

    outcome = Outcome("server killed mid-ingest")
    rng = random.Random(seed)
    runs = runs or kills // 2 + 1  # a run is killed part-way two or three times before it is whole
    local = {f"r{i}": record(root, "ingest", f"r{i}", steps) for i in range(runs)}
    server = Server(root.parent / f"{root.name}-server", store=store)
    try:
        server.start(START_TIMEOUT)
        attempt = 0
        while outcome.tried < kills and attempt < kills * 3:
            attempt += 1
            run_id = f"r{attempt % runs}"
            copy = RunPaths(server.root, "ingest", run_id).log_file
            done_bytes = copy.stat().st_size if copy.exists() else 0
            if done_bytes >= len(local[run_id]) - (64 << 10):
                continue  # too little left to kill it part-way
            fraction = rng.uniform(0.05, 0.9)
            killed: list[int] = []

            def kill_partway(offset: int, total: int, start: int = done_bytes, at: float = fraction,
                             killed: list[int] = killed) -> None:
                if not killed and offset > start + (total - start) * at:
                    server.kill()
                    killed.append(offset)

            try:
                with SyncClient(server.url, chunk_bytes=32 << 10, backoff_base=0.05, give_up_after=1.0) as client:
                    client.sync_run(RunPaths(root, "ingest", run_id), progress=kill_partway)
            except SyncError:
                pass
            if not killed:
                continue
            outcome.tried += 1
            if rng.random() < 0.5 and copy.exists():  # a kill inside a write leaves a torn frame
                with open(copy, "ab") as handle:
                    handle.write(local[run_id][copy.stat().st_size:][:100])
            try:
                server.start(START_TIMEOUT)
            except RuntimeError as error:
                outcome.fail(f"restart after kill {outcome.tried}: {error}")
                return outcome
            kept = copy.read_bytes() if copy.exists() else b""
            offset = httpx.get(f"{server.url}/api/v1/runs/ingest/{run_id}/log/offset", timeout=30).json()["offset"]
            if kept != local[run_id][:len(kept)] or offset > len(kept):
                outcome.lose(f"kill {outcome.tried}: the copy of {run_id} is not a prefix of its log")
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for run_id, data in local.items():
                try:
                    with SyncClient(server.url, chunk_bytes=32 << 10) as client:
                        client.sync_run(RunPaths(root, "ingest", run_id))
                except Exception as error:  # noqa: BLE001 - the harness counts every failure
                    outcome.fail(f"final sync of {run_id}: {type(error).__name__}: {error}")
                    continue
                if RunPaths(server.root, "ingest", run_id).log_file.read_bytes() != data:
                    outcome.lose(f"{run_id}: the server's copy differs from the log")
                if not _steps_once(http, "ingest", run_id, steps):
                    outcome.lose(f"{run_id}: a step missing or duplicated in the server's history")
    finally:
        server.stop()
    return outcome


# ---------------------------------------------------------------- auth bypass


def _operations(app: Any) -> list[tuple[str, str]]:
    schema = app.openapi()
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops]


def _fill(path: str, values: dict[str, str], default: str = "x") -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: values.get(m.group(1), default), path)


OPEN_ROUTES = {("GET", "/api/v1/health")}  # the only thing answered without a key
CONTEXT = {"project": "vision", "run_id": "r1", "run": "r1", "user": "alice"}


def auth_bypass_attack(tmp: Path) -> Outcome:
    """Every route of a server that needs keys (an in-process app), with no key, a non-Bearer
    scheme, a malformed key, a real key id with a wrong secret, a revoked key and a disabled
    user's key (each must be 401), then every project route with the key of a user who is not
    a member of the project (never 2xx). Lost: a request let through; failed: a 5xx."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    outcome = Outcome("auth bypass")
    root = tmp / "keyed"
    app = create_app(root, auth=True, index_on_start=False)
    accounts = app.state.tracklet.authorizer.accounts
    alice = accounts.create_user("alice")
    bob = accounts.create_user("bob")
    revoked = accounts.create_key("alice", label="revoked")
    accounts.revoke_key(revoked.key_id)
    carol = accounts.create_user("carol")
    accounts.disable_user("carol")
    source = tmp / "source"
    data = record(source, "vision", "r1", 50)
    credentials = {
        "no key": {}, "basic scheme": {"Authorization": "Basic YWxpY2U6cHc="},
        "malformed key": {"Authorization": "Bearer not-a-key"},
        "wrong secret": {"Authorization": f"Bearer tlk_{alice.key_id}_{'x' * 43}"},
        "revoked key": {"Authorization": f"Bearer {revoked.key}"},
        "disabled user": {"Authorization": f"Bearer {carol.key}"},
    }
    with TestClient(app) as client:
        put = client.put("/api/v1/runs/vision/r1/log", params={"offset": 0}, content=data,
                         headers={"Authorization": f"Bearer {alice.key}"})
        assert put.status_code == 200, put.text
        operations = [op for op in _operations(app) if op not in OPEN_ROUTES]
        for method, path in operations:
            url = _fill(path, CONTEXT)
            for name, headers in credentials.items():
                outcome.tried += 1
                response = client.request(method, url, headers=headers, content=b"{}" if method != "GET" else None)
                if response.status_code >= 500:
                    outcome.fail(f"{name} {method} {path}: {response.status_code}")
                elif response.status_code != 401:
                    outcome.lose(f"{name} {method} {path}: {response.status_code}")
        as_bob = {"Authorization": f"Bearer {bob.key}"}
        for method, path in operations:
            if "{project}" not in path and "{run_id}" not in path:
                continue
            outcome.tried += 1
            response = client.request(method, _fill(path, CONTEXT), headers=as_bob,
                                      content=b"{}" if method != "GET" else None)
            if response.status_code >= 500:
                outcome.fail(f"non-member {method} {path}: {response.status_code}")
            elif response.status_code < 400:
                outcome.lose(f"non-member {method} {path}: {response.status_code} {response.text[:200]}")
    return outcome


# ---------------------------------------------------------------- path traversal


TRAVERSAL = ["..", ".", "%2e%2e", "%2E%2E%2Fsecret.txt", "..%2F..%2Fsecret.txt", "..%5C..%5Csecret.txt",
             "%2Fetc%2Fpasswd", "a%00b", ".hidden", "~root", "%252e%252e", "x" * 300, "con", "%C0%AE%C0%AE"]
SECRET = "tracklet-harness-secret-4711"


def traversal_attack(tmp: Path) -> Outcome:
    """Each path parameter of every route, in turn, replaced by a traversal payload (a dev
    app, in-process), files routes with ``../`` names too. Lost: a file written outside the data
    root or a response carrying a file from outside it; failed: a 5xx."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    outcome = Outcome("path traversal")
    base = tmp / "traversal"
    root = base / "root"
    record(root, "p", "r", 20)
    (base / "secret.txt").write_text(SECRET)
    app = create_app(root, auth=False)
    before = {p for p in base.rglob("*") if root not in p.parents and p != root}
    with TestClient(app) as client:
        for method, path in _operations(app):
            names = re.findall(r"\{([^}:]+)", path)
            for name in names:
                for payload in TRAVERSAL:
                    outcome.tried += 1
                    url = _fill(path, {**{n: "p" if n == "project" else "r" for n in names}, name: payload})
                    body = MAGIC if method == "PUT" else (b"{}" if method != "GET" else None)
                    response = client.request(method, url, content=body)
                    if response.status_code >= 500:
                        outcome.fail(f"{method} {url[:120]}: {response.status_code}")
                    elif SECRET in response.text or "root:x:0:0" in response.text:
                        outcome.lose(f"{method} {url[:120]}: served a file from outside the root")
        for name in ("../../secret.txt", "..%2F..%2Fsecret.txt", "/etc/passwd", "a/../../../secret.txt"):
            for method in ("PUT", "GET"):
                outcome.tried += 1
                response = client.request(method, f"/api/v1/runs/p/r/files/{name}",
                                          content=b"overwritten" if method == "PUT" else None)
                if response.status_code >= 500:
                    outcome.fail(f"{method} files/{name}: {response.status_code}")
                elif SECRET in response.text or "root:x:0:0" in response.text:
                    outcome.lose(f"{method} files/{name}: served a file from outside the root")
    after = {p for p in base.rglob("*") if root not in p.parents and p != root}
    if after != before or (base / "secret.txt").read_text() != SECRET:
        outcome.lose(f"written outside the data root: {sorted(str(p) for p in after - before)[:5]}")
    return outcome


# ---------------------------------------------------------------- filter injection


TOKENS = [
    "config.a", "summary.b", 'config."a\\"b"', "config.`x y`", 'config."\\u0000"', "config.a.b", "state", "name",
    "exit_code", "last_step", "created", "updated", "tags", "group", "=", "==", "!=", "<", "<=", ">", ">=", "~",
    "and", "or", "not", "in", "exists", "contains", "(", ")", "[", "]", ",", "1", "-2", ".5", "1e400", "1e308",
    "99999999999999999999999", "-99999999999999999999999", "9223372036854775807", "-9223372036854775809",
    "-7d", "2026-01-01", '"2026-01-01T12:00"', '"x"', '"a\\u0000b"', "'q'", "null", "true", "false", "finished",
    "+", "-", "-summary.b", "+config.a",
]

INJECTIONS = [
    "name = \"x\"; DROP TABLE runs; --", "name = 'x' OR '1'='1'", "config.a = 1) OR (1=1", "config.\"a'); DROP TABLE "
    "runs; --\" = 1", "name = \"\\\" OR 1=1 --\"", "config.`a` = 1 UNION SELECT * FROM api_keys", "name ~ \"%\"",
    "name ~ \"_\"", "config.\"a\\\\\" = 1", "tags contains \"' OR 1=1 --\"", "1=1", "name = \"x\" /* */ or 1",
    "config.a = 1; SELECT pg_sleep(10)", "summary.\"b\"\"\" = 1", "config.\"a\n\" = 1", "exit_code = 1e999",
    "last_step > -1 or name = \"\\u0000\"", "config.a.b.c.d.e.f.g.h.i.j.k.l.m = 1", "(" * 500 + "name = \"x\"" + ")" * 500,
    "not " * 2000 + "name = \"x\"", "name in [" + ", ".join(['"x"'] * 5000) + "]",
]


def filter_injection_attack(tmp: Path, count: int, store_url: str | None = None, seed: int = 3) -> Outcome:
    """SQL-injection shaped filters and sorts, then ``count`` seeded token soups, over HTTP
    (``/projects/p/runs?filter=``, ``order_by=``) on a store with awkward keys. Failed: a 5xx;
    lost: the runs or the accounts tables changed, or an injection returned a run it should not."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    outcome = Outcome("filter injection" + (" (PostgreSQL)" if store_url else ""))
    root = tmp / ("filters-pg" if store_url else "filters")
    for index, config in enumerate([{"a": 1, 'a"b': 2, "x y": "s"}, {"a": {"b": 3}, "\x00": "z"}, {}]):
        record(root, "p", f"r{index}", 5, config=config)
    rng = random.Random(seed)
    soups = [" ".join(rng.choice(TOKENS) for _ in range(rng.randrange(1, 12))) for _ in range(count)]
    with TestClient(create_app(root, store_url=store_url, auth=False)) as client:
        def ask(**params: str) -> httpx.Response:
            return client.get("/api/v1/projects/p/runs", params=params)

        everything = sorted(run["run_id"] for run in ask().json()["runs"])
        for text in INJECTIONS + soups:
            for parameter in ("filter", "order_by"):
                outcome.tried += 1
                response = ask(**{parameter: text})
                if response.status_code >= 500:
                    outcome.fail(f"{parameter}={text[:80]!r}: {response.status_code}")
                elif response.status_code not in (200, 400, 422):
                    outcome.fail(f"{parameter}={text[:80]!r}: {response.status_code}")
                elif text in INJECTIONS and parameter == "filter" and response.status_code == 200 \
                        and response.json()["runs"] and "~" not in text and "last_step" not in text:
                    outcome.lose(f"filter={text[:80]!r} matched {len(response.json()['runs'])} run(s)")
        if sorted(run["run_id"] for run in ask().json()["runs"]) != everything or len(everything) != 3:
            outcome.lose("the runs table changed")
    return outcome


# ---------------------------------------------------------------- slowloris


def _partial_head(port: int) -> bytes:
    return f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Stalling: ".encode()


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(4096):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def slowloris_attack(tmp: Path, connections: int, nofile: int, header_timeout: int = 3) -> Outcome:
    """A real server whose open-file limit is ``nofile``, ``connections`` sockets that send part
    of a request head and stall. Failed: a client not served while they stall, the server
    dying, or a stalled connection the server never closes."""
    outcome = Outcome("slowloris (unfinished headers)")
    server = Server(tmp / "slowloris", extra=("--header-timeout", str(header_timeout), "--idle-timeout",
                                              str(header_timeout)), nofile=nofile)
    stalled: list[socket.socket] = []
    try:
        server.start(START_TIMEOUT)
        for _ in range(connections):
            outcome.tried += 1
            try:
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(_partial_head(server.port))
                stalled.append(sock)
            except OSError as error:
                outcome.fail(f"connection {outcome.tried} refused: {error}")
        try:
            if httpx.get(f"{server.url}/api/v1/health", timeout=10).status_code != 200:
                outcome.fail("a client was not served while the connections stalled")
        except httpx.HTTPError as error:
            outcome.fail(f"a client was not served while the connections stalled: {error}")
        deadline = time.monotonic() + 10 * header_timeout + 20
        open_ones = sum(not _closed_by_server(sock, deadline) for sock in stalled)
        if open_ones:
            outcome.fail(f"{open_ones} stalled connection(s) never closed by the server")
        if server.proc is None or server.proc.poll() is not None:
            outcome.fail("the server died")
        elif httpx.get(f"{server.url}/api/v1/health", timeout=10).status_code != 200:
            outcome.fail("the server does not answer after the attack")
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
    outcome.note = f"server open-file limit {nofile}"
    return outcome


# ---------------------------------------------------------------- huge key ids, oversized uploads


def _batch_frame(define: tuple[int, ...] = (), key: int | None = None) -> bytes:
    record_ = pb.Record()
    for key_id in define:
        record_.history.new_keys.add(id=key_id, name=f"k{key_id}")
    record_.history.steps.append(0)
    record_.history.times.append(1.0)
    if key is not None:
        record_.history.columns.add(key=key).floats.append(0.5)
    return frame(record_.SerializeToString())


def huge_upload_attack(tmp: Path, store: str | None = None, max_body_mb: int = 1, bound_mib: int = 50) -> Outcome:
    """Huge key ids (defined and used), frames announcing up to 4 GiB, bodies over the limit on
    the wire and decompressed, to a real server. Failed: an answer other than 4xx, or the server
    growing by more than ``bound_mib``; lost: a good upload refused afterwards."""
    import psutil

    outcome = Outcome("huge key ids / oversized frames" + (" (PostgreSQL)" if store else ""))
    server = Server(tmp / "huge", store=store, extra=("--max-body-mb", str(max_body_mb)))
    big = MAGIC + frame(b"x" * (max_body_mb << 20))
    uploads = [MAGIC + _batch_frame(define=(key_id,), key=key_id) for key_id in (50_000_000, 2**32 - 1, 2**31, 1)]
    uploads += [MAGIC + _batch_frame(key=2**32 - 1), MAGIC + _batch_frame(define=(0, 2**32 - 1)),
                MAGIC + (2**32 - 1).to_bytes(4, "little") + bytes(4) + b"\x0a",
                MAGIC + (1 << 30).to_bytes(4, "little") + bytes(4) + b"\x0a" * 1000, big]
    bombs = [gzip.compress(big), gzip.compress(MAGIC + bytes(64 << 20))]
    try:
        server.start(START_TIMEOUT)
        assert server.proc is not None
        process = psutil.Process(server.proc.pid)
        before = settled_rss(process)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            requests: list[tuple[bytes, dict[str, str]]] = [(u, {}) for u in uploads]
            requests += [(b, {"Content-Encoding": "gzip"}) for b in bombs]
            for body, headers in requests:
                outcome.tried += 1
                try:
                    response = http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=body, headers=headers)
                except httpx.HTTPError as error:
                    outcome.fail(f"upload of {len(body)} bytes: {type(error).__name__}: {error}")
                    continue
                if not 400 <= response.status_code < 500:
                    outcome.fail(f"upload of {len(body)} bytes: {response.status_code} {response.text[:200]}")
            grown = process.memory_info().rss - before
            if grown > bound_mib << 20:
                outcome.fail(f"the server grew by {grown >> 20} MiB (bound {bound_mib})")
            if http.get("/api/v1/runs/p/r/log/offset").json() != {"offset": 0}:
                outcome.lose("a refused upload was kept")
            good = MAGIC + _batch_frame(define=(0,), key=0)
            if http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=good).status_code != 200:
                outcome.lose("a good upload was refused after the attack")
        outcome.note = f"RSS grew {grown / (1 << 20):.1f} MiB"
    finally:
        server.stop()
    return outcome


# ---------------------------------------------------------------- NUL in every text, PostgreSQL


R = "\ufffd"  # what the store holds in place of NUL


def record_nul_run(root: Path, project: str = "p", run_id: str = "nul") -> None:
    """A run with NUL in every text it records: name, tags, group, job type, notes, config keys
    and values (nested, in lists), a metric key, a logged string, a summary key and value, a
    console line."""
    run = tracklet.init(
        project=project, id=run_id, dir=str(root), settings={**QUIET, "console": "wrap"},
        name="na\x00me", tags=["t\x00ag", "plain"], group="gr\x00oup", job_type="jo\x00b", notes="no\x00tes",
        config={"k\x00ey": "va\x00lue", "nested": {"in\x00ner": 2}, "list": ["a\x00", 1]},
    )
    print("li\x00ne")
    run.log({"me\x00tric": 1.0, "text": "lo\x00gged"})
    run.log({"me\x00tric": 2.0})
    run.summary["su\x00m"] = "ma\x00ry"
    run.finish()


def nul_fields_attack(root: Path, store_url: str) -> Outcome:
    """A run with NUL in every text field (and a good run) indexed into ``store_url``: each field
    must be stored with U+FFFD and be found by a filter written with the NUL. Failed: indexing
    or a query raised; lost: a field not stored or not found, or the good run missing."""
    from tracklet.store import Store
    from tracklet.store.store import RUN_FIELDS

    outcome = Outcome("NUL in every text field" + (" (PostgreSQL)" if store_url.startswith("postgresql") else ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record_nul_run(root)
        record(root, "p", "good", 10)
    store = Store(store_url, root=root)
    try:
        report = store.index()
        if report.failed:
            outcome.fail(f"indexing failed: {report.failed}")
        rows = {row["run_id"]: row for row in store.runs("p", fields=RUN_FIELDS)}
        if "good" not in rows:
            outcome.lose("the good run is missing")
        row = rows.get("nul", {})
        checks: list[tuple[str, Any]] = [
            ("name", lambda: row["name"] == f"na{R}me"), ("group", lambda: row["group_name"] == f"gr{R}oup"),
            ("job type", lambda: row["job_type"] == f"jo{R}b"), ("notes", lambda: row["notes"] == f"no{R}tes"),
            ("tag", lambda: f"t{R}ag" in row["tags"]), ("config key and value", lambda: row["config"][f"k{R}ey"]
                                                         == f"va{R}lue"),
            ("nested config key", lambda: row["config"]["nested"] == {f"in{R}ner": 2}),
            ("string in a config list", lambda: row["config"]["list"] == [f"a{R}", 1]),
            ("summary key and value", lambda: row["summary"][f"su{R}m"] == f"ma{R}ry"),
            ("metric key", lambda: f"me{R}tric" in row["keys"]),
            ("metric history", lambda: store.history("p/nul", "me\x00tric", buckets=None)[0].values.tolist()
             == [1.0, 2.0]),
            ("console line", lambda: [line.text for line in store.console("p/nul", search="li\x00ne").lines]
             == [f"li{R}ne"]),
        ]
        for text in ('config."k\\u0000ey" = "va\\u0000lue"', 'config.nested."in\\u0000ner" = 2',
                     'name = "na\\u0000me"', 'tags contains "t\\u0000ag"', 'group in ["gr\\u0000oup"]',
                     'summary."su\\u0000m" ~ "a\\u0000r"'):
            checks.append((f"filter {text}", lambda text=text: sorted(r["run_id"] for r in store.runs("p", filter=text))
                           == ["nul"]))
        for name, check in checks:
            outcome.tried += 1
            try:
                if not check():
                    outcome.lose(name)
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"{name}: {type(error).__name__}: {error}")
    finally:
        store.close()
    return outcome


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="tracklet-attacks-"))
