"""The rule behind ``core/forksafe.own``, held for code to come: an object that keeps a
per-process resource in an attribute (an SQLite connection, an SQLAlchemy engine, an httpx
client, an HTTP connection, a socket, a thread pool) keeps it through ``forksafe.own``, so that a
forked child holding the object (a ``Pool`` worker's ``Api``, an artifact cache or chunk index
used directly) opens its own there and never uses or closes the parent's; and such an object's
locks are ``own`` too (one the parent's thread held at the fork stays held in the child). A static
scan of tracklet/ (no fork, no import of what it reads)."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]

# callee (a dotted name, or its last part where it has no dot) -> what it makes
RESOURCE_CALLS = {
    "sqlite3.connect": "an SQLite connection", "connect_read_only": "an SQLite connection",
    "create_engine": "an SQLAlchemy engine", "httpx.Client": "an httpx client",
    "httpx.AsyncClient": "an httpx client", "_http_client": "an httpx client",
    "HTTPConnection": "an HTTP connection", "HTTPSConnection": "an HTTP connection",
    "socket.socket": "a socket", "socket.create_connection": "a socket", "requests.Session": "a requests session",
    "S3FileSystem": "an S3 filesystem", "GCSFileSystem": "a GCS filesystem", "boto3.client": "a boto3 client",
    "ThreadPoolExecutor": "a thread pool", "ProcessPoolExecutor": "a process pool",
}
# a parameter annotated with one of these (a dotted name: sa.Engine, sqlite3.Connection, httpx.Client)
RESOURCE_TYPES = {"Connection": "a database connection", "Engine": "an SQLAlchemy engine",
                  "Client": "an httpx client", "AsyncClient": "an httpx client"}
# a file mentioning none of these makes and takes none of the above
WORDS = ("connect", "create_engine", "Engine", "Client", "http_client", "Connection", "socket", "Session",
         "FileSystem", "boto3", "PoolExecutor")
LOCKS = {"threading.Lock", "threading.RLock", "Lock", "RLock"}

# Where a class may hold one without ``own``, and why. Keep it short: each entry is a class whose
# instances never cross a fork in a process that forks.
ALLOWED = {
    # made and kept only by HttpClient._buffers, an own: a forked child makes a new one
    ("tracklet/client/buffers.py", "BufferSender"),
    # kept only by Store._span_writer, an own (None in a forked child: made again on first use)
    ("tracklet/store/spans_writer.py", "SpanWriter"),
    # one per operation (a hashing pass, a pack write, a download stream), shut down when it ends
    ("tracklet/core/pools.py", "Pool"),
    # made per index pass from Store.engine (an own), never kept by the store
    ("tracklet/store/ingest.py", "Indexer"),
    # a query's readers and writers: the connection of a `with engine.connect()` block, for that block
    ("tracklet/store/ingest.py", "BlockWriter"),
    ("tracklet/store/query.py", "HistoryReader"),
    ("tracklet/store/windows.py", "WindowReader"),
}
# The server's objects are made in the server process after it started (a test server forked from
# its template forks before making any) and never cross a fork there.
SKIPPED = ("tracklet/server/",)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _call_kind(callee: str) -> str | None:
    for key, what in RESOURCE_CALLS.items():
        if callee == key or callee.endswith("." + key) or ("." not in key and callee.rpartition(".")[2] == key):
            return what
    return None


def _annotation_kind(annotation: ast.AST | None) -> str | None:
    if annotation is None:
        return None
    text = ast.unparse(annotation) if not isinstance(annotation, ast.Constant) else str(annotation.value)
    if "Callable" in text:  # a callback taking a connection: not one
        return None
    for part in text.replace("|", " ").replace("[", " ").replace("]", " ").replace(",", " ").split():
        name, _, last = part.rpartition(".")
        if name and last in RESOURCE_TYPES:
            return RESOURCE_TYPES[last]
    return None


def _kind(value: ast.AST, bound: dict[str, str]) -> str | None:
    if isinstance(value, ast.Call):
        return _call_kind(_dotted(value.func))
    if isinstance(value, ast.Name):
        return bound.get(value.id)
    if isinstance(value, ast.IfExp):
        return _kind(value.body, bound) or _kind(value.orelse, bound)
    if isinstance(value, ast.BoolOp):
        return next((kind for kind in (_kind(v, bound) for v in value.values) if kind), None)
    if isinstance(value, ast.NamedExpr):
        return _kind(value.value, bound)
    return None


def _class_owns(cls: ast.ClassDef) -> set[str]:
    owned = set()
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign):
            targets, value = [statement.target], statement.value
        elif isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        else:
            continue
        if isinstance(value, ast.Call) and _dotted(value.func).rpartition(".")[2] == "own":
            owned.update(target.id for target in targets if isinstance(target, ast.Name))
    return owned


def _assignments(function: ast.AST) -> Iterator[tuple[ast.AST, ast.AST, int]]:
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            pairs = [(target, node.value) for target in node.targets]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        else:
            continue
        while pairs:
            target, value = pairs.pop(0)
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs.extend(zip(target.elts, value.elts))
            else:
                yield target, value, node.lineno


def unowned(source: str, where: str = "<test>") -> list[str]:
    """``where:line: Class.attribute: what`` for each attribute of a class in ``source`` set from a
    per-process resource without ``forksafe.own``, and each lock of a class holding one likewise."""
    found = []
    for cls in (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)):
        owned = _class_owns(cls)
        holds = bool(owned)
        locks = []
        for function in cls.body:
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            arguments = function.args
            bound = {a.arg: kind for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
                     if (kind := _annotation_kind(a.annotation))}
            for target, value, line in _assignments(function):
                on_self = (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                           and target.value.id == "self")
                if on_self and isinstance(value, ast.Call) and _dotted(value.func) in LOCKS:
                    locks.append((target.attr, line))  # type: ignore[attr-defined]
                    continue
                kind = _kind(value, bound)
                if kind is None:
                    continue
                if isinstance(target, ast.Name):
                    bound[target.id] = kind
                elif on_self:
                    holds = True
                    if target.attr not in owned:  # type: ignore[attr-defined]
                        found.append(f"{where}:{line}: {cls.name}.{target.attr}: {kind}")  # type: ignore[attr-defined]
        if holds:
            found.extend(f"{where}:{line}: {cls.name}.{name}: a lock of a class holding a per-process resource"
                         for name, line in locks if name not in owned)
    return found


def test_every_holder_of_a_connection_client_or_engine_keeps_it_through_forksafe_own():
    offenders = []
    for path in sorted((CHECKOUT / "tracklet").rglob("*.py")):
        where = path.relative_to(CHECKOUT).as_posix()
        if where.startswith(SKIPPED):
            continue
        source = path.read_text(encoding="utf-8")
        if not any(word in source for word in WORDS):  # nothing to look at: not parsed
            continue
        offenders += [line for line in unowned(source, where)
                      if (where, line.split(": ")[1].split(".")[0]) not in ALLOWED]
    assert not offenders, "without forksafe.own (core/forksafe.py):\n" + "\n".join(offenders)


def test_the_rule_catches_a_holder_without_own_and_passes_one_with_it():
    # The shapes tracklet's holders take: a connection made in __init__, one made in a helper and
    # kept via a local name, an engine passed in (annotated), and a holder's lock.
    bad = textwrap.dedent("""
        import sqlite3, threading
        import httpx
        import sqlalchemy as sa

        class Cache:
            def __init__(self, path):
                self._lock = threading.Lock()
                self._db = sqlite3.connect(path)

        class Lazy:
            def open(self, path):
                db = connect_read_only(path) if path else None
                self.db = db

        class Reports:
            def __init__(self, engine: sa.Engine, on_event: Callable[[sa.Connection], None]) -> None:
                self.engine, self.on_event = engine, on_event

        class Uploads:
            def __init__(self):
                self.client = httpx.Client()
    """)
    assert [line.split(": ", 1)[1] for line in unowned(bad)] == [
        "Cache._db: an SQLite connection",
        "Cache._lock: a lock of a class holding a per-process resource",
        "Lazy.db: an SQLite connection",
        "Reports.engine: an SQLAlchemy engine",
        "Uploads.client: an httpx client",
    ]
    good = textwrap.dedent("""
        import sqlite3, threading
        from tracklet.core import forksafe

        class Cache:
            _db = forksafe.own(lambda cache, parents: cache._connect())
            _lock = forksafe.own(lambda cache, parents: threading.Lock())

            def __init__(self, path):
                self._lock = threading.Lock()
                self._db = sqlite3.connect(path)

            def rows(self):
                with sqlite3.connect(":memory:") as scratch:  # not kept
                    connection = sqlite3.connect(":memory:")
                    return connection.execute("select 1").fetchall()
    """)
    assert unowned(good) == []


def test_every_https_client_verifies_with_the_process_tls_context():
    """Outside the server, an ``httpx.Client`` verifies with ``client.http.ssl_context()`` (built
    once in a fork section, its handshake steps sections) and mounts ``proxy_mounts()`` (an HTTPS
    proxy's TLS likewise): httpx's own context is built per client outside any section, and its
    handshakes too, on tracklet's threads while the program may fork."""
    offenders = []
    for path in sorted((CHECKOUT / "tracklet").rglob("*.py")):
        where = path.relative_to(CHECKOUT).as_posix()
        source = path.read_text(encoding="utf-8")
        if where.startswith(SKIPPED) or "httpx.Client(" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and _dotted(node.func) == "httpx.Client":
                given = {keyword.arg: ast.unparse(keyword.value) for keyword in node.keywords}
                if "ssl_context()" not in given.get("verify", "") or "proxy_mounts()" not in given.get("mounts", ""):
                    offenders.append(f"{where}:{node.lineno}: {ast.unparse(node)[:120]}")
    assert not offenders, "\n".join(offenders)


def _preexec_calls(source: str) -> list[int]:
    """Lines of calls passing ``preexec_fn`` anything but None (a ``**options`` dict is not seen)."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            for keyword in node.keywords
            if keyword.arg == "preexec_fn" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)]


def test_no_process_is_started_with_a_preexec_fn():
    """``Popen(preexec_fn=...)`` makes CPython run every module's at-fork hooks, and clear the other threads'
    states, in the forked child of a process with threads: a finalizer or hook there that waits on a lock
    another thread held hangs the child before its exec, for ever (a sweep trial's start did, stalling CI).
    tracklet's processes and the tests' are started without one (sweeps/launcher.py, serverproc.with_file_limit)."""
    found = [f"{path.relative_to(CHECKOUT)}:{line}" for folder in ("tracklet", "tests", "benchmarks")
             for path in sorted((CHECKOUT / folder).rglob("*.py"))
             if "node_modules" not in path.parts and "preexec_fn" in path.read_text()
             for line in _preexec_calls(path.read_text())]
    assert found == [], found
    assert _preexec_calls("subprocess.Popen(['x'], preexec_fn=lambda: None)") == [1]
    assert _preexec_calls("subprocess.Popen(['x'], preexec_fn=None)") == []
