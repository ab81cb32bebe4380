"""Attacks on recording and reading record logs (issue #12), shared by the tests and
``benchmarks/attacks.py``: the tests run each at a bounded count and assert nothing was lost and
nothing failed; the benchmark reruns them at the issue's counts and prints the tally.

Each attack returns an :class:`Outcome`: ``tried``, ``lost`` (data a reader could not read back,
or rows lost) and ``failed`` (a reader, the CLI or a process raised, exited non-zero, hung or grew
past its bound), with one line per problem in ``problems``.

The oracle for byte damage: the frames whose bytes are untouched, framed into a fresh log. For a
crafted frame: the frame as a reader should use it (a batch without its bad column) or nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tracklet
from tracklet.core.reader import RunState, damage_summary, replay
from tracklet.core.recordlog import MAGIC, RecordLogError, frame, scan
from tracklet.core.values import Histogram
from tracklet.proto import records_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
SEED = 20261202
PROJECT, RUN_ID = "harness", "victim"


@dataclasses.dataclass
class Outcome:
    """What one attack class did: counts, and one line per problem (printed by the benchmark)."""

    name: str
    tried: int = 0
    lost: int = 0
    failed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    note: str = ""

    def lose(self, why: str) -> None:
        self.lost += 1
        self.problems.append(f"LOST {why}")

    def fail(self, why: str) -> None:
        self.failed += 1
        self.problems.append(f"FAILED {why}")

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.failed == 0


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# ---------------------------------------------------------------- the recorded run


def record_pristine(root: Path) -> bytes:
    """A real run's record log: config, several history batches (floats, ints, strings, a
    histogram, a sparse key), summary, alerts, a metric definition, console lines, an exit."""
    run = tracklet.init(project=PROJECT, id=RUN_ID, dir=str(root), settings=QUIET,
                        config={"lr": 0.001, "layers": [64, 64], "name": "mlp"})
    run.define_metric("loss", summary="min")
    for step in range(240):
        row: dict[str, Any] = {"loss": 1.0 / (step + 1), "epoch": step // 40,
                               "phase": "warmup" if step < 20 else "train"}
        if step % 10 == 0:
            row["eval/acc"] = step / 240
        if step == 100:
            row["weights"] = Histogram([0.1, 0.2, 0.2, 0.5])
        run.log(row)
        if step % 30 == 29:
            run.flush()  # several history records
            run.alert("checkpoint", f"step {step}", level="WARN" if step % 60 == 59 else "INFO")
    run.summary["best"] = 0.5
    run.finish()
    return (root / "projects" / PROJECT / "runs" / RUN_ID / "run.tlog").read_bytes()


def frames_of(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, payload) of every frame of an intact log."""
    return [(offset, offset + 8 + len(payload), payload) for offset, payload in scan(data).payloads]


def clean_log(payloads: list[bytes]) -> bytes:
    return MAGIC + b"".join(frame(p) for p in payloads)


def write_log(root: Path, data: bytes, run_id: str = RUN_ID) -> Path:
    log_file = root / "projects" / PROJECT / "runs" / run_id / "run.tlog"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(data)
    return log_file


# ---------------------------------------------------------------- damage kinds


@dataclasses.dataclass
class Case:
    name: str
    data: bytes  # the damaged log
    expected: list[bytes]  # payloads a reader should use, in order (its oracle)
    damaged: bool  # whether readers must report damage


def _byte_case(name: str, original: bytes, mutated: bytes) -> Case:
    """Oracle for byte damage: every frame whose bytes are unchanged, in order. A log cut exactly
    between two frames is a log whose writer stopped there (a kill does that): readers read it
    whole and have no damage to report."""
    frames = frames_of(original)
    intact = [payload for start, end, payload in frames if mutated[start:end] == original[start:end]]
    lost = len(intact) < len(frames)
    header_hurt = bool(mutated) and mutated[:8] != MAGIC
    cut_between_frames = len(mutated) > len(MAGIC) and original.startswith(mutated) \
        and any(end == len(mutated) for _, end, _ in frames)
    return Case(name, mutated, intact, (lost or header_hurt) and not cut_between_frames)


def flip(data: bytes, position: int, bit: int) -> bytes:
    mutated = bytearray(data)
    mutated[position] ^= 1 << bit
    return bytes(mutated)


def byte_cases(original: bytes, rng: random.Random, count: int) -> list[Case]:
    """Three fixed cases, then ``count`` seeded ones: bit flips, zeroed ranges, truncations,
    three flips at once (damaged regions with intact frames between them)."""
    cases = [
        Case("zero-filled file", bytes(len(original)), [], True),
        _byte_case("header zeroed", original, bytes(8) + original[8:]),
        _byte_case("20% bit flip", original, flip(original, len(original) // 5, 0)),
    ]
    size = len(original)
    for index in range(count):
        kind = index % 4
        if kind == 0:
            position = rng.randrange(8, size)
            cases.append(_byte_case(f"bit flip at {position}", original, flip(original, position, rng.randrange(8))))
        elif kind == 1:
            start = rng.randrange(0, size - 1)
            length = rng.choice([1, 4, 8, 64, 512, 4096])
            end = min(size, start + length)
            cases.append(_byte_case(f"zeroed {start}-{end}", original,
                                    original[:start] + bytes(end - start) + original[end:]))
        elif kind == 2:
            cut = rng.randrange(0, size)
            cases.append(_byte_case(f"truncated at {cut}", original, original[:cut]))
        else:
            mutated = original
            for _ in range(3):
                mutated = flip(mutated, rng.randrange(8, size), rng.randrange(8))
            cases.append(_byte_case("three bit flips", original, mutated))
    return cases


def _batch(steps: list[int], **columns: tuple[int, list[float], list[int]]) -> pb.Record:
    record = pb.Record()
    batch = record.history
    batch.steps.extend(steps)
    batch.times.extend(1.7e9 + s for s in steps)
    for key_id, values, rows in columns.values():
        column = batch.columns.add()
        column.key = key_id
        column.floats.extend(values)
        column.rows.extend(rows)
    return record


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def mutate_payload(payload: bytes, rng: random.Random) -> bytes:
    """1, 2 or 8 random bytes of ``payload`` replaced (the frame's checksum is recomputed by
    ``clean_log``, so only the content is wrong)."""
    mutated = bytearray(payload)
    for _ in range(rng.choice([1, 2, 8])):
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    return bytes(mutated)


def crafted_cases(original: bytes, rng: random.Random, count: int) -> list[Case]:
    """Frames with an intact checksum but content a reader can't use as it is, each inserted in
    the middle of the log (so what follows must still be read), then ``count`` random payload
    mutations under a recomputed checksum."""
    payloads = [payload for _, _, payload in frames_of(original)]
    key_ids = read_state(original).key_ids
    loss = key_ids["loss"]
    where = len(payloads) // 2
    specs: list[tuple[str, bytes, bytes | None]] = []

    good = _batch([5000, 5001], good=(loss, [0.5, 0.25], []))
    undefined = _batch([5000, 5001], good=(loss, [0.5, 0.25], []), bad=(9999, [1.0, 2.0], []))
    specs.append(("column for an undefined key id", undefined.SerializeToString(), good.SerializeToString()))
    past = _batch([5000, 5001], good=(loss, [0.5, 0.25], []), bad=(key_ids["epoch"], [1.0, 2.0], [0, 7]))
    specs.append(("column rows past the batch", past.SerializeToString(), good.SerializeToString()))
    extra = _batch([5000, 5001], good=(loss, [0.5, 0.25], []), bad=(key_ids["epoch"], [1.0, 2.0, 3.0], []))
    specs.append(("more values than rows", extra.SerializeToString(), good.SerializeToString()))
    uneven = _batch([5000, 5001], good=(loss, [0.5, 0.25], []))
    del uneven.history.times[-1]
    specs.append(("steps without times", uneven.SerializeToString(), None))
    huge = _batch([5000], good=(loss, [0.5], []))
    definition = huge.history.new_keys.add()
    definition.id, definition.name = 2**31, "huge"
    specs.append(("key id 2**31", huge.SerializeToString(), None))
    alert = pb.Record()
    alert.alert.title, alert.alert.level = "from a newer writer", 42
    specs.append(("unknown alert level", alert.SerializeToString(), alert.SerializeToString()))
    console = pb.Record()
    console.console.stream = 7  # a stream this reader doesn't know: read as stdout
    line = console.console.lines.add()
    line.time, line.text = 1.7e9, "hello from a newer writer"
    specs.append(("unknown console stream", console.SerializeToString(), console.SerializeToString()))
    unknown_kind = b"\xfa\x01\x03abc"  # field 31, length-delimited: a kind this reader doesn't know
    specs.append(("unknown record kind", unknown_kind, unknown_kind))
    specs.append(("not protobuf", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", None))
    nested = b""
    for _ in range(200):  # a Value nested deeper than the parser allows
        nested = b"\x32" + _varint(len(nested) + 2) + b"\x0a" + _varint(len(nested)) + nested
    specs.append(("nesting too deep", b"\x12" + _varint(len(nested) + 2) + b"\x0a" + _varint(len(nested)) + nested,
                  None))

    cases = [  # a record from a newer writer (an unknown kind or enum value) is not damage
        Case(name, clean_log(payloads[:where] + [bad] + payloads[where:]),
             payloads[:where] + ([used] if used is not None else []) + payloads[where:], used != bad)
        for name, bad, used in specs
    ]
    for _ in range(count):
        target = rng.randrange(1, len(payloads))
        changed = payloads[:target] + [mutate_payload(payloads[target], rng)] + payloads[target + 1:]
        cases.append(Case(f"mutated payload of frame {target}", clean_log(changed), changed, False))
    return cases


def corruption_cases(original: bytes, count: int, seed: int = SEED) -> list[Case]:
    """``count`` damaged logs (at least the 13 fixed ones): two thirds byte damage, one third
    crafted frames under an intact checksum."""
    rng = random.Random(seed)
    crafted_random = max(0, count // 3 - 10)
    byte_random = max(0, count - 13 - crafted_random)
    return byte_cases(original, rng, byte_random) + crafted_cases(original, rng, crafted_random)


# ---------------------------------------------------------------- what readers must agree on


def read_state(data: bytes, tmp: Path | None = None) -> RunState:
    path = (tmp or Path(tempfile.gettempdir())) / f"harness-{os.getpid()}.tlog"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return replay(path)
    finally:
        path.unlink()


def comparable(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return "NaN" if math.isnan(value) else value
    if kind in (int, str, bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, Histogram):
        return ("histogram", comparable(value.to_dict()))
    return value


def view(state: RunState) -> dict:
    """Everything a reader shows of a run."""
    return comparable({
        "history": dict(state.history()),
        "config": state.config,
        "summary": state.summary,
        "alerts": [vars(a) for a in state.alerts],
        "console": [vars(line) for line in state.console],
        "metrics": [vars(m) for m in state.metric_definitions],
        "exit": state.exit.exit_code if state.exit is not None else None,
        "start": state.start.run_id if state.start is not None else None,
        "keys": sorted(state.key_names.values()),
    })


def check_replay(case: Case, outcome: Outcome, tmp: Path) -> None:
    """replay() reads exactly the case's oracle and reports damage where there is some."""
    try:
        state = read_state(case.data, tmp)
        seen = view(state)
        summary = damage_summary(state)
    except Exception as error:  # noqa: BLE001 - the harness counts every failure
        outcome.fail(f"replay {case.name}: {type(error).__name__}: {error}")
        return
    expected = view(read_state(clean_log(case.expected), tmp))
    if seen != expected:
        outcome.lose(f"replay {case.name}: read {len(seen['history']['_step'])} rows, "
                     f"expected {len(expected['history']['_step'])}")
    if case.damaged and summary is None:
        outcome.fail(f"replay {case.name}: damage not reported")


def _store_view(root: Path) -> dict:
    api = tracklet.Api(root)
    try:
        rows = api.runs(PROJECT, order_by="created")
        series = api.history(f"{PROJECT}/{RUN_ID}", ["loss", "epoch", "eval/acc"], buckets=None)
        return {"runs": [r.id for r in rows], **{s.key: (s.steps.tolist(), s.values.tolist()) for s in series}}
    finally:
        api.store.close()


def check_every_reader(case: Case, outcome: Outcome, tmp: Path) -> None:
    """``Api.run()`` (history, summary, console), ``tracklet runs``/``show``/``export``/``index``
    and the store (``Api.runs``, ``Api.history``) read the damaged log as they read a clean log
    of its intact frames, and say it is damaged."""
    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    damaged_root, clean_root = Path(tempfile.mkdtemp(dir=tmp)), Path(tempfile.mkdtemp(dir=tmp))
    write_log(damaged_root, case.data)
    write_log(clean_root, clean_log(case.expected))
    runner = CliRunner()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recorded = tracklet.Api(damaged_root).run(f"{PROJECT}/{RUN_ID}")
            clean = tracklet.Api(clean_root).run(f"{PROJECT}/{RUN_ID}")
            if comparable(dict(recorded.history())) != comparable(dict(clean.history())) \
                    or comparable(recorded.summary) != comparable(clean.summary) or recorded.console != clean.console:
                outcome.lose(f"Api.run {case.name}")
            if case.damaged and not (recorded.damaged and recorded.damage):
                outcome.fail(f"Api.run {case.name}: damage not reported")
            rows = len(clean.history()["_step"])
        for args in (["runs", PROJECT], ["show", f"{PROJECT}/{RUN_ID}"],
                     ["export", f"{PROJECT}/{RUN_ID}", "-f", "jsonl"], ["index"]):
            done = runner.invoke(cli, ["--dir", str(damaged_root), *args])
            if done.exit_code != 0:
                outcome.fail(f"tracklet {args[0]} {case.name}: exit {done.exit_code}: {done.output[-300:]}")
            elif args[0] == "export" and done.stdout.count("\n") != rows:
                outcome.lose(f"tracklet export {case.name}: {done.stdout.count(chr(10))} rows, expected {rows}")
        if _store_view(damaged_root) != _store_view(clean_root):
            outcome.lose(f"store {case.name}")
    except Exception as error:  # noqa: BLE001 - the harness counts every failure
        outcome.fail(f"readers {case.name}: {type(error).__name__}: {error}")


def corruption_attack(count: int, tmp: Path, every_reader: int | None = None) -> Outcome:
    """``count`` damaged logs through replay(); the first ``every_reader`` of them (all by
    default) through every other reader too."""
    outcome = Outcome("corrupted record logs, every reader")
    pristine = record_pristine(Path(tempfile.mkdtemp(dir=tmp)))
    cases = corruption_cases(pristine, count)
    limit = len(cases) if every_reader is None else every_reader
    for index, case in enumerate(cases):
        outcome.tried += 1
        check_replay(case, outcome, tmp)
        if index < limit:
            check_every_reader(case, outcome, tmp)
    if limit < len(cases):
        outcome.note = f"replay on all, every reader on the first {limit}"
    return outcome


# ---------------------------------------------------------------- mutated logs under a valid checksum


def fuzz_check(data: bytes, path: str) -> RunState:
    """The fuzz target's check (tests/fuzz_recordlog.py): scanning (strict and resyncing),
    replaying, the history, the system metrics and the damage summary never raise; the one
    documented exception is ``RecordLogError`` from the strict scanner on a bad header."""
    try:
        strict = scan(data)
    except RecordLogError:
        pass
    else:
        assert strict.end_offset <= len(data)
    loose = scan(data, resync=True)
    assert loose.end_offset <= len(data)
    assert all(offset + 8 + len(payload) <= len(data) for offset, payload in loose.payloads)
    with open(path, "wb") as handle:
        handle.write(data)
    state = replay(path)
    state.history()
    state.history(["loss", "missing"])
    state.system_metrics()
    damage_summary(state)
    return state


def _history_steps(payload: bytes) -> set[int]:
    record = pb.Record.FromString(payload)
    return set(record.history.steps) if record.WhichOneof("kind") == "history" else set()


def mutated_log_attack(count: int, tmp: Path, seed: int = SEED) -> Outcome:
    """``count`` logs, each with one frame's payload mutated under a recomputed checksum, through
    the fuzz target's check. Lost: a step of an untouched history frame that replay did not read."""
    outcome = Outcome("mutated logs, valid CRCs (fuzz target)")
    pristine = record_pristine(Path(tempfile.mkdtemp(dir=tmp)))
    payloads = [payload for _, _, payload in frames_of(pristine)]
    steps = [_history_steps(payload) for payload in payloads]
    everything = set().union(*steps)
    path = str(tmp / "mutated.tlog")
    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(count):
            outcome.tried += 1
            target = rng.randrange(1, len(payloads))
            changed = list(payloads)
            changed[target] = mutate_payload(payloads[target], rng)
            try:
                state = fuzz_check(clean_log(changed), path)
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"frame {target} mutated: {type(error).__name__}: {error}")
                continue
            untouched = everything - steps[target]
            missing = untouched - set(state.history(["_step"])["_step"])
            if missing:
                outcome.lose(f"frame {target} mutated: {len(missing)} rows of intact frames not read")
    return outcome


def atheris_fuzz(runs: int, tmp: Path, max_len: int = 16384) -> Outcome:
    """The coverage-guided fuzz target (atheris) for ``runs`` inputs from a real log's corpus."""
    outcome = Outcome("coverage-guided fuzz (atheris)")
    corpus = tmp / "corpus"
    corpus.mkdir(exist_ok=True)
    pristine = record_pristine(Path(tempfile.mkdtemp(dir=tmp)))
    (corpus / "pristine").write_bytes(pristine)
    (corpus / "small").write_bytes(clean_log([p for _, _, p in frames_of(pristine)][:3]))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_recordlog.py")), f"-runs={runs}", "-seed=1",
         f"-max_len={max_len}", "-timeout=20", "-rss_limit_mb=0", str(corpus)],
        env={**_child_env(), "TRACKLET_FUZZ_DIR": str(tmp)}, capture_output=True, text=True, timeout=3600,
    )
    outcome.tried = runs
    if done.returncode != 0 or f"Done {runs} runs" not in done.stderr:
        outcome.fail(f"fuzzer exit {done.returncode}: {done.stderr[-2000:]}")
    return outcome


# ---------------------------------------------------------------- kill -9


KILL_SCRIPT = """
import sys, time, tracklet
run = tracklet.init(project="killed", id="k", resume="allow",
                    settings={"flush_interval": 0.2, "capture_environment": False, "system_metrics": False,
                              "console": "off"})
print(run.step, flush=True)
while True:
    now = time.time()
    run.log({"logged_at": now})
    print(run.step, repr(now), flush=True)
    time.sleep(0.002)
"""


def kill_attack(root: Path, kills: int, logging_for: float = 1.2, grace: float = 1.0) -> Outcome:
    """``kills`` times: a process logs into one run (resumed each time) for ``logging_for``
    seconds and is killed with SIGKILL. Lost: a row logged more than ``grace`` seconds before its
    kill that is not in the history, or a step recorded twice."""
    outcome = Outcome("kill -9 of logging processes")
    logged: list[tuple[float, float]] = []  # (logged_at, killed_at)
    env = {**_child_env(), "TRACKLET_DIR": str(root)}
    for _ in range(kills):
        outcome.tried += 1
        child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT], stdout=subprocess.PIPE, text=True, env=env)
        session: list[float] = []
        try:
            assert child.stdout is not None
            if not child.stdout.readline():
                outcome.fail(f"the logging process exited {child.wait(30)} before logging")
                continue
            for line in child.stdout:
                session.append(float(line.split()[1]))
                if session[-1] - session[0] >= logging_for:
                    break
            killed_at = time.time()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        logged.extend((when, killed_at) for when in session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            history = tracklet.Api(root).run("killed/k").history()
        except Exception as error:  # noqa: BLE001 - the harness counts every failure
            outcome.fail(f"reading the killed run: {type(error).__name__}: {error}")
            return outcome
    recorded = {t for t in history.get("logged_at", []) if t is not None}
    due = [when for when, killed_at in logged if when < killed_at - grace]
    missing = [when for when in due if when not in recorded]
    if missing:
        outcome.lose(f"{len(missing)} of {len(due)} rows logged > {grace} s before a kill are missing")
    steps = history.get("_step", [])
    if len(steps) != len(set(steps)):
        outcome.lose(f"{len(steps) - len(set(steps))} steps recorded twice")
    outcome.note = f"{len(due)} rows due, {len(recorded)} recorded"
    return outcome


# ---------------------------------------------------------------- many processes, one project, indexing


WORKER_SCRIPT = """
import sys, time, tracklet
index, seconds = int(sys.argv[1]), float(sys.argv[2])
run = tracklet.init(project="crowd", id=f"w{index}", config={"index": index},
                    settings={"capture_environment": False, "system_metrics": False})
end, step = time.monotonic() + seconds, 0
while time.monotonic() < end:
    for _ in range(20):  # ~2,000 rows a second
        run.log({"loss": index + step / 1e6, "step": step})
        step += 1
    time.sleep(0.01)
run.finish()
print(f"worker {index} done {step}")
"""

INDEX_LOOP = """
import sys, time
from tracklet.store import Store
store = Store(root=sys.argv[1])
print("indexing", flush=True)
while True:
    try:
        store.index()
    except Exception:  # busy (the queries index too): try again
        pass
    time.sleep(0.005)
"""


def concurrency_attack(root: Path, processes: int, seconds: float, timeout: float = 600) -> Outcome:
    """``processes`` processes log into one project for ``seconds`` each while another process
    indexes in a loop and this one queries (``Api.runs`` with a filter, ``Api.history``,
    ``tracklet runs --filter``). Failed: a query that raised, a process that failed; lost: a run
    not read back whole (every step it logged, in order), or not whole in the store."""
    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    outcome = Outcome("concurrent logging + indexing + queries")
    env = {**_child_env(), "TRACKLET_DIR": str(root)}
    indexer = subprocess.Popen([sys.executable, "-c", INDEX_LOOP, str(root)], env=env, stdout=subprocess.PIPE,
                               text=True)
    assert indexer.stdout is not None
    indexer.stdout.readline()
    children = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(i), str(seconds)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(processes)]
    queries = 0
    runner = CliRunner()
    deadline = time.monotonic() + timeout
    try:
        while any(child.poll() is None for child in children) and time.monotonic() < deadline:
            queries += 1
            try:
                api = tracklet.Api(root)
                found = api.runs("crowd", filter="config.index >= 0")
                api.history([f"crowd/{r.id}" for r in found[:4]], ["loss"])
                # the CLI names a project that doesn't exist yet as an error (right): ask once a run made it
                made = "crowd" in api.projects()
                api.store.close()
                if queries % 10 == 0 and made:
                    listed = runner.invoke(cli, ["--dir", str(root), "runs", "crowd", "--filter", "config.index >= 0"])
                    if listed.exit_code != 0:
                        outcome.fail(f"tracklet runs --filter: exit {listed.exit_code}: {listed.output[-300:]}")
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"query {queries}: {type(error).__name__}: {error}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                outcome.fail(f"logging process {child.args[3]} still running after {timeout} s")
        outputs = [child.communicate(timeout=30) for child in children]
        indexer.kill()
        indexer.wait(30)
    outcome.tried = processes
    logged: dict[int, int] = {}
    for index, (child, (out, err)) in enumerate(zip(children, outputs)):
        if child.returncode != 0 or f"worker {index} done" not in out:
            outcome.fail(f"logging process {index} exited {child.returncode}: {err[-300:]}")
        else:
            logged[index] = int(out.split()[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = tracklet.Api(root)
        api.index()
        stored = {r.id for r in api.runs("crowd", filter="config.index >= 0")}
        for index, steps in logged.items():
            try:
                recorded = api.run(f"crowd/w{index}")
                history = recorded.history()
                if history.get("step") != list(range(steps)) or recorded.state != "finished" or recorded.damaged:
                    outcome.lose(f"run w{index}: {len(history.get('step', []))} of {steps} rows, {recorded.state}")
                series = api.history([f"crowd/w{index}"], ["loss"], buckets=None)
                if f"w{index}" not in stored or len(series[0].steps) != steps:
                    outcome.lose(f"run w{index}: not whole in the store")
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"reading run w{index}: {type(error).__name__}: {error}")
        api.store.close()
    outcome.note = f"{queries} queries while logging, {sum(logged.values()):,} rows"
    return outcome


# ---------------------------------------------------------------- bad values


class LostTensor:
    """Looks like a torch tensor to tracklet; converting it raises, as a tensor on a lost device does."""

    __module__ = "torch"

    def detach(self) -> Any:
        raise RuntimeError("CUDA error: device-side assert triggered")


def _looped() -> dict:
    looped: dict = {"x": 1.0}
    looped["self"] = looped
    return looped


def _deep(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = {"d": value}
    return value


def _log_twice(run: tracklet.Run, row: dict) -> None:
    run.log(row)
    run.log(row)


def _define_then(summary: str, values: list[float]) -> Callable[[tracklet.Run], None]:
    def attack(run: tracklet.Run) -> None:
        run.define_metric("bad", summary=summary)
        for value in values:  # one key set, so one column of one batch
            run.log({"bad": value, "loss_shadow": 0.0})
    return attack


def _numpy(kind: str) -> Any:
    import numpy as np

    if kind == "object":
        return np.array([object(), None], dtype=object)
    if kind == "nan":
        return np.array([np.nan, np.inf, -np.inf])
    return np.float64("nan")


BAD_VALUES: dict[str, Callable[[tracklet.Run], None]] = {
    "sum overflows a mean summary (two 1e308)": _define_then("mean", [1e308, 1e308]),
    "+inf and -inf in one batch of min/max/mean": _define_then("min,max,mean", [math.inf, -math.inf]),
    "NaN": lambda run: run.log({"bad": math.nan}),
    "step 2**63": lambda run: run.log({"bad": 1.0}, step=2**63),
    "step 2**64 + 5 via set_step": lambda run: run.set_step(2**64 + 5),
    "step going back": lambda run: run.log({"bad": 1.0}, step=0),
    "int 2**70 + 1": lambda run: run.log({"bad": 2**70 + 1}),
    "int 2**53 + 1 after a float": lambda run: (run.log({"bad": 0.5}), run.log({"bad": 2**53 + 1})),
    "int 10**5000": lambda run: run.log({"bad": 10**5000}),
    "lone surrogate in a value": lambda run: run.log({"bad": "x \ud800"}),
    "lone surrogate in a key": lambda run: run.log({"bad \udfff": 1.0}),
    "NUL in key and value": lambda run: run.log({"ba\x00d": "va\x00lue"}),
    "self-referencing dict under a plain key set": lambda run: _log_twice(run, {"bad": _looped()}),
    "dict nested 5,000 deep": lambda run: run.log({"bad": _deep(5000)}),
    "self-referencing config value": lambda run: run.config.update({"bad": _looped()}),
    "self-referencing summary value": lambda run: run.summary.__setitem__("bad", _looped()),
    "tensor whose conversion raises": lambda run: run.log({"bad": LostTensor()}),
    "histogram protobuf refuses": lambda run: run.log({"bad": Histogram(np_histogram=([-1], [0.0, 1.0]))}),
    "unsupported object": lambda run: run.log({"bad": object()}),
    "numpy object array": lambda run: run.log({"bad": _numpy("object")}),
    "numpy NaN/inf array": lambda run: run.log({"bad": _numpy("nan")}),
    "key of 100,000 characters": lambda run: run.log({"k" * 100_000: 1.0}),
}


def bad_value_attack(root: Path, kinds: Iterable[str] | None = None, rows: int = 20) -> Outcome:
    """One run per kind: ``rows`` good rows (a float and a string key), the bad value in the
    middle. Failed: log() or anything around it raised into training, or the run does not read
    back, export (csv, jsonl, parquet) or index; lost: a good row missing."""
    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    outcome = Outcome("bad values")
    runner = CliRunner()
    for name in kinds if kinds is not None else BAD_VALUES:
        outcome.tried += 1
        run_id = f"bad{outcome.tried}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                run = tracklet.init(project="bad", id=run_id, dir=str(root), settings=QUIET)
                for step in range(rows):
                    if step == rows // 2:
                        BAD_VALUES[name](run)
                    run.log({"loss": float(step), "text": f"s{step}"})
                run.finish()
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"{name}: raised into training: {type(error).__name__}: {error}")
                continue
            try:
                history = tracklet.Api(root).run(f"bad/{run_id}").history()
            except Exception as error:  # noqa: BLE001 - the harness counts every failure
                outcome.fail(f"{name}: reading back: {type(error).__name__}: {error}")
                continue
        if [v for v in history.get("loss", []) if v is not None] != [float(s) for s in range(rows)] or \
                [v for v in history.get("text", []) if v is not None] != [f"s{s}" for s in range(rows)]:
            outcome.lose(f"{name}: good rows missing")
        for fmt in ("csv", "jsonl", "parquet"):
            done = runner.invoke(cli, ["--dir", str(root), "export", f"bad/{run_id}", "-f", fmt,
                                       "-o", str(root / f"{run_id}.{fmt}")])
            if done.exit_code != 0:
                outcome.fail(f"{name}: export {fmt}: exit {done.exit_code}: {done.output[-300:]}")
    indexed = runner.invoke(cli, ["--dir", str(root), "index"])
    if indexed.exit_code != 0 or "failed" in indexed.output.lower():
        outcome.fail(f"tracklet index: exit {indexed.exit_code}: {indexed.output[-300:]}")
    return outcome


# ---------------------------------------------------------------- a full disk


FULL_DISK_SCRIPT = """
import os, sys, tracklet
scenario, rows, filler = sys.argv[1], int(sys.argv[2]), sys.argv[3]
settings = {"capture_environment": False, "system_metrics": False, "console": "off", "flush_interval": 0.05}
if scenario == "full at init":
    try:
        tracklet.init(project="full", id=scenario.replace(" ", "-"), settings=settings)
    except OSError as error:
        print("init refused:", error, flush=True)
    os.remove(filler)
run = tracklet.init(project="full", id=scenario.replace(" ", "-"), settings=settings)
for step in range(rows):
    run.log({"step": step, "text": "x" * 1000})
    if step % 100 == 99:
        run.flush()
    if step == rows // 2 and scenario == "freed mid-run":  # the disk filled at ~rows // 3
        os.remove(filler)
run.finish()
print("training went on", flush=True)
"""

FULL_DISK_SCENARIOS = ("stays full", "freed mid-run", "full at init")


def full_disk_attack(scratch: Path, size_kib: int = 1024, rows: int = 600) -> Outcome:
    """A run logs ~600 kB into a ``size_kib`` tmpfs (root only; skipped otherwise) that a filler
    file leaves ~200 KiB of: the disk fills mid-run and stays full, or fills and is freed
    mid-run, or is full when ``init`` creates the log (then freed). Failed: the training process
    did not finish normally, the full disk was not reported, a refused ``init`` left an empty log
    or did not name it, or a reader raised; lost: the rows recorded are not a prefix of those
    logged, or a row logged after the space came back is missing."""
    outcome = Outcome("full disk (tmpfs)")
    if os.geteuid() != 0:
        outcome.note = "skipped: mounting a small tmpfs needs root"
        return outcome
    notes = []
    for scenario in FULL_DISK_SCENARIOS:
        mount = scratch / f"small-fs-{scenario.replace(' ', '-')}"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            outcome.note = f"skipped: mount: {done.stderr.strip()}"
            return outcome
        try:
            outcome.tried += 1
            filler = mount / "filler"
            with open(filler, "wb") as handle:
                try:
                    handle.write(bytes((size_kib - (0 if scenario == "full at init" else 200)) << 10))
                except OSError:
                    pass  # full
            _full_disk_scenario(scenario, mount, filler, rows, outcome, notes)
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    outcome.note = "; ".join(notes)
    return outcome


def _full_disk_scenario(scenario: str, mount: Path, filler: Path, rows: int, outcome: Outcome,
                        notes: list[str]) -> None:
    run_id = scenario.replace(" ", "-")
    env = {**_child_env(), "TRACKLET_DIR": str(mount)}
    try:
        child = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, scenario, str(rows), str(filler)], env=env,
                               capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        outcome.fail(f"{scenario}: the training process hung")
        return
    if child.returncode != 0 or "training went on" not in child.stdout:
        outcome.fail(f"{scenario}: training process exit {child.returncode}: {child.stderr[-400:]}")
        return
    if scenario == "stays full" and "No space left" not in child.stderr:
        outcome.fail(f"{scenario}: the full disk was not reported")
    if scenario == "full at init" and not ("init refused" in child.stdout and "run.tlog" in child.stdout):
        outcome.fail(f"{scenario}: init on a full disk did not say which file it could not write: "
                     f"{child.stdout[-300:]} {child.stderr[-300:]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            api = tracklet.Api(mount)
            history = api.run(f"full/{run_id}").history()
            damaged = [run.id for run in api.runs("full") if run.damaged]
        except Exception as error:  # noqa: BLE001 - the harness counts every failure
            outcome.fail(f"{scenario}: reading the run: {type(error).__name__}: {error}")
            return
    steps = history.get("step", [])
    if steps != list(range(len(steps))):
        outcome.lose(f"{scenario}: the recorded rows are not a prefix of the logged rows")
    elif scenario != "stays full" and len(steps) != rows:
        outcome.lose(f"{scenario}: {len(steps)} of {rows} rows recorded after the space came back")
    if damaged and scenario != "stays full":  # there, a torn last frame is what the disk holds
        outcome.fail(f"{scenario}: runs listed as damaged: {damaged}")
    notes.append(f"{scenario}: {len(steps)}/{rows} rows")
