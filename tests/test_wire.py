"""core/wire.py writes the bytes protobuf writes: its schema is records.proto's, and over random
messages (NaN, inf, -0.0, int64 limits, ints past int64, unicode and lone surrogates, empty
batches) its bytes equal ``SerializeToString(deterministic=True)`` of the same message built with
protobuf, parse back equal, and the values protobuf refuses it refuses too, keeping nothing."""

from __future__ import annotations

import math
import subprocess
import sys
import types

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklet.core import encoder as encoder_module
from tracklet.core import wire
from tracklet.core.values import Histogram, fill_entries
from tracklet.proto import records_pb2 as pb

from conftest import REPO

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TYPES = {
    "double": FieldDescriptor.TYPE_DOUBLE, "sint64": FieldDescriptor.TYPE_SINT64, "int64": FieldDescriptor.TYPE_INT64,
    "int32": FieldDescriptor.TYPE_INT32, "uint32": FieldDescriptor.TYPE_UINT32, "uint64": FieldDescriptor.TYPE_UINT64,
    "bool": FieldDescriptor.TYPE_BOOL, "string": FieldDescriptor.TYPE_STRING, "bytes": FieldDescriptor.TYPE_BYTES,
    "enum": FieldDescriptor.TYPE_ENUM, "message": FieldDescriptor.TYPE_MESSAGE, "map": FieldDescriptor.TYPE_MESSAGE,
}


def _same(built: wire.Message, expected: object, maps: bool = False) -> None:
    """The wire message's bytes are protobuf's, and protobuf parses them back to the same message.
    With ``maps`` (a message with map fields, whose order protobuf leaves unspecified: upb's
    deterministic order is its own), the parsed message equals protobuf's and has its size."""
    data = built.SerializeToString()
    parsed = type(expected)()
    parsed.ParseFromString(data)
    assert parsed == expected
    if maps:
        assert len(data) == expected.ByteSize()  # type: ignore[attr-defined]
        return
    assert data == expected.SerializeToString(deterministic=True)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the schema is records.proto's


@pytest.mark.parametrize("message", sorted(wire.SCHEMA))
def test_schema_restates_records_proto(message):
    descriptor = getattr(pb, message).DESCRIPTOR
    oneof = wire.ONEOFS.get(message)
    for name, number, kind, repeated, type_name in wire.SCHEMA[message]:
        field = descriptor.fields_by_name[name]
        assert field.number == number, name
        assert field.type == _TYPES[kind], name
        assert field.is_repeated == (repeated or kind == "map"), name
        if kind == "map":
            assert field.message_type.GetOptions().map_entry, name
            assert [f.type for f in field.message_type.fields] == [FieldDescriptor.TYPE_STRING] * 2, name
        elif kind == "message":
            assert field.message_type.name == type_name, name
        assert (field.containing_oneof.name if field.containing_oneof else None) == oneof, name
        assert not field.has_presence or oneof or kind == "message", f"{name}: explicit presence outside a oneof"
        if repeated and kind not in ("string", "bytes", "message"):
            assert field.is_packed, name
    if oneof is None:  # every field of a message written whole is known here
        assert {f.name for f in descriptor.fields} == {f[0] for f in wire.SCHEMA[message]}, message


def test_enum_numbers_are_records_proto():
    assert wire.SCHEMA_VERSION_1 == pb.SCHEMA_VERSION_1
    for mode in ("LAST", "MIN", "MAX", "MEAN", "NONE", "FIRST"):
        assert getattr(wire, f"SUMMARY_MODE_{mode}") == getattr(pb, f"SUMMARY_MODE_{mode}")


def test_a_run_that_records_the_common_records_never_imports_protobuf(tmp_path):
    script = (
        "import sys, tracklet\n"
        "run = tracklet.init(project='p', dir=sys.argv[1], config={'lr': 0.1, 'nested': {'a': [1, None]}},\n"
        "                    settings={'system_metrics': False, 'capture_wait': 30})\n"
        "for step in range(3000):\n"
        "    run.log({'loss': 1.0 / (step + 1), 'epoch': step // 100, 'ok': True, 'tag': 'é'})\n"
        "print('to the console')\n"
        "run.summary['best'] = 0.5\n"
        "run.finish()\n"
        "assert 'google.protobuf' not in sys.modules, 'protobuf was imported'\n"
        "unneeded = {'uuid', 'platform', 'secrets', 'hmac'} & set(sys.modules)\n"
        "assert not unneeded, sorted(unneeded)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    import tracklet

    run = tracklet.Api(root=str(tmp_path)).runs("p")[0]
    assert run.config["nested"] == {"a": [1, None]}
    assert run.summary["best"] == 0.5 and run.summary["tag"] == "é"
    environment = run.environment_record  # written by hand too
    assert environment.hostname and environment.python_implementation and not environment.incomplete
    history = run.history()
    assert history.num_rows == 3000 and history["epoch"][-1] == 29 and history["loss"][2] == pytest.approx(1 / 3)
    assert history["ok"][0] is True and history["tag"][-1] == "é" and history["_step"][-1] == 2999


# ---------------------------------------------------------------- random messages, both ways

_INT64 = st.integers(-(2**63), 2**63 - 1)
_EDGE_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308])
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | _EDGE_FLOATS
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(["", "é", "日本語", "\U0001f600"])


def _steps():
    consecutive = st.builds(lambda first, count: list(range(first, first + count)),
                            st.integers(0, 2**62) | st.integers(0, 300) | st.sampled_from([63, 8191, 2**20 - 3]),
                            st.integers(0, 300))
    return consecutive | st.lists(_INT64, max_size=40) | st.lists(st.integers(-3, 3), max_size=40)


_COLUMN_FIELDS = {
    "floats": st.lists(_FLOATS, max_size=30),
    "ints": st.lists(_INT64, max_size=30),
    "bools": st.lists(st.booleans(), max_size=30),
    "strings": st.lists(_TEXT, max_size=8),
    "big_ints": st.lists(st.integers().map(str), max_size=4),
}


@st.composite
def _batches(draw):
    """A HistoryBatch recipe: (new_keys, steps, times, columns), applied to both builders alike."""
    keys = draw(st.lists(st.tuples(st.integers(0, 2**32 - 1), _TEXT), max_size=4))
    steps = draw(_steps())
    times = draw(st.lists(_FLOATS, max_size=len(steps), min_size=len(steps)))
    columns = []
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(sorted(_COLUMN_FIELDS) + ["histograms"]))
        rows = draw(st.lists(st.integers(0, 2**32 - 1), max_size=20) | st.just(list(range(draw(st.integers(0, 300))))))
        if field == "histograms":
            values = draw(st.lists(st.tuples(st.lists(_FLOATS, max_size=5), st.lists(st.integers(0, 2**64 - 1), max_size=5),
                                             st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=3))
        else:
            values = draw(_COLUMN_FIELDS[field])
        columns.append((draw(st.integers(0, 2**32 - 1)), rows, field, values))
    return keys, steps, times, columns


def _build_batch(record, recipe) -> None:
    keys, steps, times, columns = recipe
    batch = record.history
    batch.steps.extend(steps)  # an empty extend makes the batch present, in both
    batch.times.extend(times)
    for key_id, name in keys:
        definition = batch.new_keys.add()
        definition.id = key_id
        definition.name = name
    for key, rows, field, values in columns:
        column = batch.columns.add()
        column.key = key
        column.rows.extend(rows)
        if field == "histograms":
            for edges, counts, nan_count, inf_count in values:
                histogram = column.histograms.add()
                histogram.edges.extend(edges)
                histogram.counts.extend(counts)
                histogram.nan_count = nan_count
                histogram.inf_count = inf_count
        else:
            getattr(column, field).extend(values)


@FAST
@given(_batches())
def test_history_batches_are_protobufs_bytes(recipe):
    built, expected = wire.Record(), pb.Record()
    _build_batch(built, recipe)
    _build_batch(expected, recipe)
    _same(built, expected)


def test_varints_take_every_path_with_the_same_bytes(monkeypatch):
    """Consecutive steps (byte patterns), numpy (when imported), value by value: one result."""
    import numpy  # noqa: F401  (the numpy path needs it imported)

    cases = [list(range(0, 3000)), list(range(2**20 - 100, 2**20 + 5000)), list(range(2**62, 2**62 + 70)),
             [5, 5, 6, 7], [-1, 0, -(2**63), 2**63 - 1] * 10, list(range(100, 0, -1)) * 3]
    for steps in cases:
        expected = pb.HistoryBatch()
        expected.steps.extend(steps)
        for numpy_loaded in (True, False):
            if not numpy_loaded:
                monkeypatch.delitem(sys.modules, "numpy")
            built = wire.HistoryBatch()
            built.steps.extend(steps)
            built.columns.add().rows.extend([abs(step) % 2**32 for step in steps])
            expected_rows = pb.HistoryBatch()
            expected_rows.CopyFrom(expected)
            expected_rows.columns.add().rows.extend([abs(step) % 2**32 for step in steps])
            _same(built, expected_rows)
            monkeypatch.undo()


def test_steps_known_to_be_consecutive_serialize_as_protobuf_after_any_later_change():
    """Consecutive steps are checked once, when extended into the empty field; whatever is added
    after (more steps, a step out of order) is serialized as protobuf serializes it."""
    for changes in ([("extend", range(0, 500))], [("extend", range(0, 500)), ("append", 3)],
                    [("extend", range(10, 300)), ("extend", range(300, 900))],
                    [("extend", range(10, 300)), ("extend", [5, 6])], [("extend", []), ("extend", range(7, 99))],
                    [("extend", [4]), ("extend", range(5, 200))], [("extend", range(2**63 - 70, 2**63))],
                    [("extend", [0, 2, 1, 3])], [("extend", [7, 7, 9])]):  # their ends as if consecutive
        built, expected = wire.HistoryBatch(), pb.HistoryBatch()
        for how, steps in changes:
            for batch in (built, expected):
                getattr(batch.steps, how)(list(steps) if how == "extend" else steps)
        _same(built, expected)


def test_consecutive_steps_of_int_kinds_serialize_as_protobuf():
    """Steps found consecutive without a look at each one's type (numpy ints, an IntEnum among
    them) are written as protobuf writes them."""
    import enum

    import numpy as np

    class Step(enum.IntEnum):
        SEVEN = 7

    for steps in ([5, 6, Step.SEVEN, 8], [0, 1, np.int64(2), 3], [np.int64(4), 5, 6], list(range(1000, 3000))):
        built, expected = wire.HistoryBatch(), pb.HistoryBatch()
        for batch in (built, expected):
            batch.steps.extend(steps)
        _same(built, expected)


def test_consecutive_steps_are_refused_as_protobuf_refuses_them():
    """Past int64, or holding a float or a bool: refused whole, as protobuf does."""
    for steps in (list(range(2**63 - 3, 2**63 + 2)), list(range(-(2**63) - 2, -(2**63) + 3)), [0, 1.0, 2], [0, True, 2],
                  [5, 6, 7.0, 8], [-1, 0, True, 2], [3, "4", 5], [True, 2, 3]):  # a float, a bool, a str inside
        outcomes = []
        for batch in (wire.HistoryBatch(), pb.HistoryBatch()):
            with pytest.raises((TypeError, ValueError)) as raised:
                batch.steps.extend(steps)
            outcomes.append((raised.type, len(batch.steps)))
        assert outcomes[0] == outcomes[1]


_PLAIN = st.recursive(
    st.none() | st.booleans() | _FLOATS | st.integers() | _TEXT | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.dictionaries(_TEXT, _PLAIN, max_size=6), st.lists(_TEXT, max_size=3))
def test_config_and_summary_values_are_protobufs_bytes(items, removed):
    for kind in ("config", "summary"):
        built, expected = wire.Record(), pb.Record()
        for record in (built, expected):
            update = getattr(record, kind)
            update.SetInParent()
            fill_entries(update.items, items)
            update.removed.extend(removed)
        _same(built, expected)


_RUN_START_TEXT = ("run_id", "project", "name", "group", "job_type", "notes", "host", "python_version", "platform",
                   "cwd", "tracklet_version", "reproduces")


@FAST
@given(st.fixed_dictionaries({name: _TEXT for name in _RUN_START_TEXT}), _FLOATS, _INT64, st.booleans(),
       st.lists(_TEXT, max_size=3), st.lists(_TEXT, max_size=3),
       st.integers(-(2**31), 2**31 - 1), _FLOATS, _FLOATS, _TEXT, st.lists(st.tuples(_TEXT, _TEXT), max_size=3),
       st.integers(0, 2**32 - 1))
def test_run_start_and_exit_are_protobufs_bytes(texts, start_time, pid, resumed, tags, command, exit_code, end_time,
                                                runtime, error, seeds, dropped):
    built, expected = wire.Record(), pb.Record()
    for record in (built, expected):
        start = record.run_start
        start.schema_version = 1
        for name, value in texts.items():
            setattr(start, name, value)
        start.start_time, start.pid, start.resumed = start_time, pid, resumed
        start.tags.extend(tags)
        start.command.extend(command)
    _same(built, expected)
    built, expected = wire.Record(), pb.Record()
    for record in (built, expected):
        end = record.exit
        end.SetInParent()
        end.exit_code, end.end_time, end.runtime, end.error, end.seeds_dropped = exit_code, end_time, runtime, error, dropped
        for api, value in seeds:
            seed = end.seeds.add()
            seed.api, seed.value = api, value
    _same(built, expected)


@FAST
@given(st.integers(0, 2), st.lists(st.tuples(_FLOATS, _TEXT, st.booleans()), max_size=5))
def test_console_output_is_protobufs_bytes(stream, lines):
    built, expected = wire.Record(), pb.Record()
    for record in (built, expected):
        output = record.console
        output.stream = stream
        for time, text, partial in lines:
            line = output.lines.add()
            line.time, line.text = time, text
            if partial:
                line.partial = True
    _same(built, expected)


_ENVIRONMENT_TEXT = ("git_commit", "git_branch", "git_remote", "git_root", "git_diff_sha256", "hostname", "os",
                     "cpu_model", "executable", "python_implementation", "cuda_version", "cudnn_version", "program")


@st.composite
def _environment_parts(draw):
    """Partial Environment messages, as the capture thread's parts fill them."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        part: dict = {name: draw(_TEXT) for name in draw(st.lists(st.sampled_from(_ENVIRONMENT_TEXT), max_size=4))}
        part["scalars"] = {"git_dirty": draw(st.booleans()), "cpu_count": draw(st.integers(-(2**31), 2**31 - 1)),
                           "memory_total_bytes": draw(_FLOATS)}
        part["lists"] = {name: draw(st.lists(_TEXT, max_size=3)) for name in ("gpus", "incomplete", "code_skipped")}
        part["maps"] = {name: draw(st.dictionaries(_TEXT, _TEXT, max_size=3)) for name in ("variables", "incomplete_reasons")}
        part["packages"] = draw(st.lists(st.tuples(_TEXT, _TEXT, _TEXT, st.booleans()), max_size=3))
        part["code_files"] = draw(st.lists(st.tuples(_TEXT, st.integers(0, 2**64 - 1), _TEXT), max_size=2))
        parts.append(part)
    return parts


def _fill_environment(environment, part) -> None:
    for name in _ENVIRONMENT_TEXT:
        if name in part:
            setattr(environment, name, part[name])
    for name, value in part["scalars"].items():
        setattr(environment, name, value)
    for name, values in part["lists"].items():
        getattr(environment, name).extend(values)
    for name, values in part["maps"].items():
        for key, value in values.items():
            getattr(environment, name)[key] = value
    for name, version, url, editable in part["packages"]:
        package = environment.packages.add()
        package.name, package.version, package.url, package.editable = name, version, url, editable
    for path, size, digest in part["code_files"]:
        entry = environment.code_files.add()
        entry.path, entry.size_bytes, entry.sha256 = path, size, digest


@FAST
@given(_environment_parts(), st.booleans(), st.booleans())
def test_environment_is_protobufs_bytes_merged_from_its_parts(parts, taken, set_first):
    """Merged (wire's ``TakeFrom`` too: its lists moved, as environment.py does) into a record whose
    environment was set first, or is first set by the merge."""
    built, expected = wire.Record(), pb.Record()
    for record, partial_type in ((built, lambda: wire.Message("Environment")), (expected, pb.Environment)):
        if set_first:
            record.environment.SetInParent()
        for part in parts:
            partial = partial_type()
            _fill_environment(partial, part)
            if taken and record is built:
                record.environment.TakeFrom(partial)
            else:
                record.environment.MergeFrom(partial)
    _same(built, expected, maps=True)


_UINT64 = st.integers(0, 2**64 - 1)


@FAST
@given(project=_TEXT, name=_TEXT, kind=_TEXT, version=_INT64, digest=_TEXT, aliases=st.lists(_TEXT, max_size=4),
       size=_UINT64, files=_UINT64, when=_FLOATS, reused=st.booleans(), written=_UINT64)
def test_artifact_records_are_protobufs_bytes(project, name, kind, version, digest, aliases, size, files, when,
                                              reused, written):
    """The artifact worker's ``ArtifactLogged`` and ``ArtifactUsed`` records (a code snapshot's
    among them) are written without protobuf, bytes for bytes as protobuf writes them."""
    from tracklet.artifacts import worker

    info = types.SimpleNamespace(project=project, name=name, type=kind, version=version, digest=digest, size=size,
                                 file_count=files)
    expected = pb.Record()
    logged = expected.artifact_logged
    worker.version_ref(logged.artifact, info)
    logged.aliases.extend(aliases)
    logged.size_bytes, logged.file_count, logged.time, logged.reused, logged.bytes_written = size, files, when, \
        reused, written
    _same(worker.logged_record(info, aliases, reused, written, when), expected)
    expected = pb.Record()
    worker.version_ref(expected.artifact_used.artifact, info)
    expected.artifact_used.time = when
    _same(worker.used_record(info, when), expected)


def test_a_run_whose_code_snapshot_is_logged_as_an_artifact_never_imports_protobuf(tmp_path):
    """A program that imports an untracked file of its repository (a train.py not committed yet)
    has it stored as a ``code`` artifact as the run finishes: its ``ArtifactLogged`` record is
    written without protobuf too (~30 ms of CPU in a fresh process, which finish() waited for),
    and the artifact store names its temporary files with ``os.urandom``, without ``uuid`` (which
    imports ``platform``: ~3.4 ms of CPU there) or ``secrets`` (``hmac``, ``base64``: ~1.1 ms)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "helper.py").write_text("LOSS = 0.5\n")  # untracked, imported: snapshotted
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=repo, check=True)
    script = (
        "import sys, tracklet, helper\n"
        "run = tracklet.init(project='p', dir=sys.argv[1], settings={'system_metrics': False, 'capture_wait': 30})\n"
        "run.log({'loss': helper.LOSS})\n"
        "run.finish()\n"
        "assert 'google.protobuf' not in sys.modules, 'protobuf was imported'\n"
        "unneeded = {'uuid', 'platform', 'secrets', 'hmac'} & set(sys.modules)\n"
        "assert not unneeded, sorted(unneeded)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], cwd=repo, capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    import tracklet

    (run,) = tracklet.Api(root=str(tmp_path / "data")).runs("p")
    assert [entry["path"] for entry in run.metadata["code"]["files"]] == ["helper.py"]
    assert [(ref["type"], ref["version"]) for ref in run.logged_artifacts] == [("code", 0)]


# ---------------------------------------------------------------- what protobuf refuses


@pytest.mark.parametrize(("field", "values"), [
    ("steps", [1, 2**63]), ("steps", [-(2**63) - 1]), ("steps", [1, 2.5]), ("steps", ["1"]), ("steps", [1, True]),
    ("times", [1.0, "x"]), ("times", [None]), ("times", [2**1100]),
])
def test_a_refused_value_raises_and_keeps_nothing_as_protobuf_does(field, values):
    for batch in (wire.HistoryBatch(), pb.HistoryBatch()):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            getattr(batch, field).extend(values)
        assert len(getattr(batch, field)) == 0


@pytest.mark.parametrize(("message", "field", "value"), [
    ("KeyDefinition", "name", "bad \ud800 surrogate"), ("KeyDefinition", "id", -1), ("KeyDefinition", "id", 2**32),
    ("KeyDefinition", "id", 1.0), ("KeyDefinition", "id", True), ("RunExit", "exit_code", 2**31), ("RunStart", "start_time", "now"),
    ("MapEntry", "key", b"\xff not UTF-8"), ("MapEntry", "key", 3),
])
def test_a_refused_scalar_raises_as_protobuf_does(message, field, value):
    for built in (wire.Message(message), getattr(pb, message)()):
        with pytest.raises((TypeError, ValueError, UnicodeError)):
            setattr(built, field, value)


def test_a_refused_string_in_a_list_keeps_nothing():
    for batch in (wire.HistoryBatch(), pb.HistoryBatch()):
        column = batch.columns.add()
        with pytest.raises(UnicodeError):
            column.strings.extend(["fine", "\udc80"])
        assert list(column.strings) == []


# ---------------------------------------------------------------- build orders (a oneof, marks, re-serializing)


def _stub_modified_after_its_sibling(record, _):
    history = record.history  # obtained while unset
    record.exit.exit_code = 3  # its oneof sibling set
    history.steps.append(5)  # protobuf sets history in the record again, replacing exit


def _stub_list_after_its_sibling(record, _):
    steps = record.history.steps
    record.exit.exit_code = 3
    steps.extend([1, 2])


def _stub_child_added_after_its_sibling(record, _):
    columns = record.history.columns
    record.exit.exit_code = 3
    columns.add(key=2).floats.append(1.0)


def _marked_switched_then_modified(record, _):
    history = record.history
    history.steps.append(1)
    record.exit.exit_code = 3  # history is cleared; changing it later changes a detached message
    history.steps.append(2)
    history.columns.add(key=1)


def _marked_list_then_merged(record, module):
    environment = record.environment
    environment.packages.add(name="a")
    other = module.Environment()
    other.hostname = "h"
    other.variables["k"] = "v"
    other.packages.add(name="b")
    environment.MergeFrom(other)
    environment.MergeFrom(other)
    environment.packages.add(name="c")
    environment.variables["z"] = "y"


@pytest.mark.parametrize("build", [_stub_modified_after_its_sibling, _stub_list_after_its_sibling,
                                   _stub_child_added_after_its_sibling, _marked_switched_then_modified,
                                   _marked_list_then_merged])
def test_build_orders_write_protobufs_bytes_every_time(build):
    """However a record is built (a field obtained before its oneof sibling is set, then changed; a
    message changed after its mark), its bytes and size are protobuf's, serialized twice too."""
    module = types.SimpleNamespace(Environment=lambda: wire.Message("Environment"))
    built, expected = wire.Record(), pb.Record()
    build(built, module)
    build(expected, pb)
    assert built.ByteSize() == expected.ByteSize() == built.ByteSize()
    assert built.WhichOneof("kind") == expected.WhichOneof("kind")
    _same(built, expected, maps=True)
    assert built.SerializeToString() == built.SerializeToString()


# ---------------------------------------------------------------- the encoder, through either builder

_PROTOBUF_BUILDER = types.SimpleNamespace(Record=pb.Record, HistoryBatch=pb.HistoryBatch, Message=pb.Record)
_KEYS = st.sampled_from(["loss", "acc", "é/ключ", "日本", "_step", "a/b", "x" * 40])
_ROW_VALUES = (_FLOATS | st.integers() | st.booleans() | _TEXT | st.none() | st.just("lone \ud800")
               | st.builds(lambda c: Histogram(np_histogram=(c, list(range(len(c) + 1)))), st.lists(st.integers(0, 9),
                                                                                                   max_size=3))
               | st.dictionaries(st.sampled_from(["a", "b"]), _FLOATS, max_size=2) | st.just([1, 2]))


@st.composite
def _rows(draw):
    keysets = draw(st.lists(st.lists(_KEYS, min_size=1, max_size=3, unique=True).map(tuple), min_size=1, max_size=3))
    steps = draw(_steps() | st.lists(st.integers(-(2**64), 2**64), max_size=5))
    rows = []
    for step in steps:
        keys = draw(st.sampled_from(keysets))
        time = draw(_FLOATS | st.just("not a time"))
        rows.append((step, time, keys, tuple(draw(_ROW_VALUES) for _ in keys)))
    return rows


def _encode_both(monkeypatch, rows, how):
    outputs = []
    for builder in (wire, _PROTOBUF_BUILDER):
        monkeypatch.setattr(encoder_module, "wire", builder)
        warnings: list[tuple] = []
        summary = encoder_module.SummaryTracker(lambda key, text, into=warnings: into.append((key, text)))
        encoder = encoder_module.HistoryEncoder(summary, lambda key, text, into=warnings: into.append((key, text)))
        try:
            record = how(encoder, rows)
        except Exception as error:
            outputs.append((type(error), None, None, [key for key, _ in warnings]))
            continue
        data = None if record is None else (record.SerializeToString(deterministic=True) if builder is not wire
                                            else record.SerializeToString())
        encoder.commit()
        update = summary.take_update()
        summary_data = None if update is None else (update.SerializeToString(deterministic=True)
                                                    if builder is not wire else update.SerializeToString())
        outputs.append((None, data, summary_data, [key for key, _ in warnings]))  # protobuf's texts differ
    monkeypatch.undo()
    return outputs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(_rows())
def test_the_encoder_writes_protobufs_bytes_for_any_rows(monkeypatch, rows):
    """Whatever the rows hold, the encoder records the same values, drops the same ones with
    the same warnings, and keeps the same summary, through wire as through protobuf."""
    if not rows:
        return
    built, expected = _encode_both(monkeypatch, rows, lambda encoder, rows: encoder.encode(rows))
    assert built == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(_KEYS, min_size=1, max_size=4, unique=True).map(tuple), _steps(),
       st.sampled_from(["floats", "ints", "bools", "mixed"]), st.data())
def test_encode_columns_writes_protobufs_bytes(monkeypatch, keys, steps, kind, data):
    """The sender's column path (rows queued flat), with the value types a training loop logs."""
    values = {"floats": _FLOATS, "ints": _INT64, "bools": st.booleans(), "mixed": _ROW_VALUES}[kind]
    columns = [data.draw(st.lists(values, min_size=len(steps), max_size=len(steps))) for _ in keys]
    times = data.draw(st.lists(_FLOATS, min_size=len(steps), max_size=len(steps)))
    if not steps:
        return
    built, expected = _encode_both(monkeypatch, None,
                                   lambda encoder, _: encoder.encode_columns(steps, times, [(keys, (), columns)]))
    assert built == expected


def test_a_bool_among_ints_is_a_column_of_its_own_as_with_protobuf(monkeypatch):
    """protobuf refuses a bool in an int field, so the encoder writes such a key as two columns;
    wire refuses it too (hypothesis found the difference once)."""
    rows = [(step, 1.0, ("epoch",), (value,)) for step, value in enumerate([1, True, 2, False, 3])]
    built, expected = _encode_both(monkeypatch, rows, lambda encoder, rows: encoder.encode(rows))
    assert built == expected
    record = pb.Record()
    record.ParseFromString(built[1])
    assert [list(column.ints) or list(column.bools) for column in record.history.columns] == [[1, 2, 3], [True, False]]


# ---------------------------------------------------------------- no reference cycles

_WIRE_TYPES = (wire.Message, wire._Scalars, wire._Doubles, wire._Messages, wire._StringMap)


def _wire_garbage(build) -> list[str]:
    """The wire objects ``build()`` leaves to the cyclic collector (freed by it, not as they are dropped).

    Not those held by a dead frame: another thread of this process (a run an earlier test left, its
    environment capture failing as its folder went) can drop a message its exception's traceback holds
    meanwhile, a frame cycle the collector frees, not one of the wire's own (ci54)."""
    import gc
    import types

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        build()
        gc.collect()
        garbage = {id(item) for item in gc.garbage}
        held_by_frames: set[int] = set()
        reaching = [item for item in gc.garbage if isinstance(item, types.FrameType)]
        while reaching:
            for held in gc.get_referents(reaching.pop()):
                if id(held) in garbage and id(held) not in held_by_frames:
                    held_by_frames.add(id(held))
                    reaching.append(held)
        return sorted({type(item).__name__ for item in gc.garbage
                       if isinstance(item, _WIRE_TYPES) and id(item) not in held_by_frames})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_the_garbage_check_leaves_out_a_message_another_threads_traceback_held():
    """ci54: a run an earlier test left live had its environment capture fail (its folder gone) while the
    check ran: the message its exception's frame held was freed by the collector, read as a wire cycle."""
    import threading

    def capture_that_fails():
        def capture():
            environment = wire.Record().environment
            environment.packages.add(name="numpy")
            environment.variables["A"] = "b"
            raise FileNotFoundError("the run's folder is gone")

        try:
            capture()
        except FileNotFoundError as error:
            kept = error  # noqa: F841 - the error -> its traceback -> this frame -> the error: a cycle

    def build():
        meanwhile = threading.Thread(target=capture_that_fails)
        meanwhile.start()
        meanwhile.join()

    assert _wire_garbage(build) == []


def test_records_a_run_writes_are_freed_as_they_are_dropped_not_by_the_cyclic_collector(tmp_path):
    """Each nested message used to keep a back-reference to its parent (and each repeated field to its
    message): every record was a reference cycle. In a process with a large heap (a model's Python
    objects), the full collections that free such cycles are deferred, so records piled up."""
    import tracklet

    def record_a_run():
        run = tracklet.init(project="p", dir=str(tmp_path), config={"lr": 0.1, "layers": [64, 64]},
                            settings={"system_metrics": False})
        for step in range(300):
            run.log({"loss": 1.0 / (step + 1), "epoch": step // 100, "ok": True, "tag": "é",
                     "nested": {"a": step, "b": [1.0, None]}, "hist": tracklet.Histogram([0.5, 1.5, 2.5])})
        print("to the console")
        run.summary["best"] = 0.5
        run.finish()

    assert _wire_garbage(record_a_run) == []
    assert tracklet.Api(root=str(tmp_path)).runs("p")[0].history().num_rows == 300


def test_a_message_built_field_by_field_leaves_no_cycle():
    def build():
        record = wire.Record()
        batch = record.history
        batch.steps.extend([1, 2, 3])
        column = batch.columns.add(key=1)
        column.floats.extend([0.1, 0.2, 0.3])
        record.SerializeToString()
        environment = wire.Record().environment
        environment.packages.add(name="numpy")
        environment.variables["A"] = "b"
        merged = wire.Record()
        merged.environment.MergeFrom(environment)
        merged.SerializeToString()
        taken = wire.Record()  # as the environment capture moves its parts in (environment.py)
        taken.environment.TakeFrom(environment)
        taken.SerializeToString()

    assert _wire_garbage(build) == []


def test_merging_from_a_built_message_reads_only_what_it_has():
    partial = wire.Message("Environment")
    partial.hostname = "h"
    before = partial.SerializeToString()
    record = wire.Record()
    record.environment.MergeFrom(partial)
    assert partial.SerializeToString() == before and sorted(partial._values) == ["hostname"]
    assert record.environment.hostname == "h" and record.HasField("environment")
