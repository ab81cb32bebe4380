"""`tracklet import tensorboard`: a log written by torch.utils.tensorboard.SummaryWriter imports
with identical scalars (float32 values exactly), histograms and hparams; importing again changes
nothing; a corrupt event file is reported clearly."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard package (test extra) is needed by SummaryWriter")
torch_tb = pytest.importorskip("torch.utils.tensorboard", reason="torch's SummaryWriter writes the log")
np = pytest.importorskip("numpy")

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.importers import import_tensorboard, tfrecord  # noqa: E402
from tracklet.importers.crc32c import crc32c, masked_crc32c  # noqa: E402

STEPS = 250


def f32(value: float) -> float:
    """What a float becomes stored as float32, which is how TensorBoard keeps scalars."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A log written by SummaryWriter, and what was written (step -> value, wall times)."""
    root = tmp_path_factory.mktemp("tb")
    writer = torch_tb.SummaryWriter(str(root / "exp1"))
    expected: dict = {"loss": {}, "lr": {}, "acc/train": {}, "acc/val": {}, "wall": {}}
    for step in range(0, STEPS * 2, 2):  # every other step: steps are kept, not renumbered
        wall = 1_800_000_000.0 + step * 0.5
        loss = 1.0 / (step + 1) + 1e-9
        writer.add_scalar("loss", loss, step, walltime=wall)
        writer.add_scalar("lr", 0.1 * 0.99 ** step, step, walltime=wall, new_style=True)  # a tensor scalar
        writer.add_scalars("acc", {"train": step / 1000, "val": step / 2000}, step, walltime=wall)
        expected["loss"][step] = f32(loss)
        expected["lr"][step] = f32(0.1 * 0.99 ** step)
        expected["acc/train"][step] = f32(step / 1000)
        expected["acc/val"][step] = f32(step / 2000)
        expected["wall"][step] = wall
    values = np.linspace(-2.0, 2.0, 1001)
    writer.add_histogram("weights", values, 10, bins=16, walltime=1_800_000_005.0)  # step 10's time
    expected["histogram"] = np.histogram(values, bins=16)
    writer.add_hparams({"lr": 0.1, "optimizer": "sgd", "batch_size": 64}, {"hparam/best": 0.75})
    writer.close()
    other = torch_tb.SummaryWriter(str(root / "exp2"))
    other.add_scalar("loss", 0.5, 0, walltime=1_800_000_000.0)
    other.close()
    return root, expected


def test_scalars_import_exactly(logdir: tuple[Path, dict], tmp_path: Path) -> None:
    source, expected = logdir
    results = import_tensorboard(source, root=tmp_path)
    assert sorted((r.name, r.status) for r in results) == [("exp1", "imported"), ("exp2", "imported")]
    exp1 = next(r for r in results if r.name == "exp1")
    run = tracklet.Api(tmp_path).run(exp1.path)
    assert run.project == "tensorboard" and run.name == "exp1" and run.state == "finished"
    assert run.user is None  # TensorBoard records no user; the importing machine's is not the run's
    history = run.history()
    for key in ("loss", "lr", "acc/train", "acc/val"):
        points = {s: v for s, v in zip(history["_step"], history[key]) if v is not None}
        assert points == expected[key], key  # float32 values, exactly, at the original steps
    assert history["_step"][: STEPS] == list(range(0, STEPS * 2, 2))
    for step, when in zip(history["_step"], history["_timestamp"]):
        if step in expected["wall"] and step != 0:  # step 0 also holds add_hparams' metric, written later
            assert when == expected["wall"][step]
    assert run.config == {"lr": 0.1, "optimizer": "sgd", "batch_size": 64}
    assert run.summary["hparam/best"] == f32(0.75)


def test_histogram_keeps_its_counts(logdir: tuple[Path, dict], tmp_path: Path) -> None:
    source, expected = logdir
    results = import_tensorboard(source, root=tmp_path)
    run = tracklet.Api(tmp_path).run(next(r for r in results if r.name == "exp1").path)
    history = run.history(["weights"])
    histogram = next(v for v in history["weights"] if v is not None)
    counts, _edges = expected["histogram"]
    assert sum(histogram.counts) == int(counts.sum()) == 1001
    assert histogram.edges[0] == pytest.approx(-2.0) and histogram.edges[-1] >= 2.0
    assert len(histogram.edges) == len(histogram.counts) + 1
    assert histogram.edges == sorted(histogram.edges)


def test_importing_twice_is_a_no_op(logdir: tuple[Path, dict], tmp_path: Path) -> None:
    from click.testing import CliRunner

    source, _ = logdir
    runner = CliRunner()
    first = runner.invoke(main, ["--dir", str(tmp_path), "import", "tensorboard", str(source), "-q"])
    assert first.exit_code == 0, first.output
    assert "2 run(s) imported" in first.output
    logs = sorted((tmp_path / "projects" / "tensorboard" / "runs").glob("*/run.tlog"))
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in logs]
    again = runner.invoke(main, ["--dir", str(tmp_path), "import", "tensorboard", str(source), "-q"])
    assert again.exit_code == 0 and "0 run(s) imported, 2 already there" in again.output
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in logs] == before


def test_corrupt_event_file_is_reported_and_its_intact_records_kept(logdir: tuple[Path, dict], tmp_path: Path) -> None:
    from click.testing import CliRunner

    source, expected = logdir
    event_file = next((source / "exp2").glob("events.out.tfevents.*"))
    data = bytearray(event_file.read_bytes())
    records = tfrecord.scan(bytes(data)).payloads
    damaged = tmp_path / "logs" / "broken"
    damaged.mkdir(parents=True)
    last_offset = records[-1][0]
    data[last_offset + 14] ^= 0xFF  # inside the last record's data
    (damaged / event_file.name).write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "tensorboard",
                                       str(tmp_path / "logs"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"damaged at byte {last_offset} (data checksum mismatch)" in result.output
    assert "Traceback" not in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tracklet.Api(tmp_path / "root").runs("tensorboard")[0].name == "broken"


def test_not_a_log_directory_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "tensorboard",
                                       str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no TensorBoard event files" in result.output


def test_crc32c_known_vectors() -> None:
    # RFC 3720 (iSCSI) test vectors, and LevelDB's masking of them
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert masked_crc32c(b"123456789") == ((((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_tfrecord_round_trip_and_truncation() -> None:
    payloads = [b"first", b"", b"x" * 70000]
    data = b"".join(tfrecord.frame(p) for p in payloads)
    assert [p for _, p in tfrecord.scan(data).payloads] == payloads
    cut = tfrecord.scan(data[:-5])
    assert [p for _, p in cut.payloads] == payloads[:2] and cut.damage is not None and cut.damage.torn_tail


@pytest.mark.parametrize("source", ["wandb", "tensorboard"])
def test_import_without_its_extra_is_one_line_naming_it(source: str, tmp_path: Path) -> None:
    """google-crc32c is the `import` extra, not a core dependency: without it (blocked here),
    `tracklet import` says what to install in one line, no traceback."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; sys.modules['google_crc32c'] = None\n"
            "from tracklet.cli.main import main\n"
            "main(['--dir', sys.argv[1], 'import', sys.argv[2], sys.argv[1]])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), source], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'tracklet[import]'" in lines[0], done.stderr


def test_dropped_images_and_audio_are_named_by_kind(tmp_path: Path) -> None:
    """add_image/add_audio write Summary.Value's image and audio fields: the warning says so (it
    said "empty summaries", as if nothing had been logged), and the scalars beside them import."""
    writer = torch_tb.SummaryWriter(str(tmp_path / "logs" / "media"))
    writer.add_scalar("loss", 0.5, 0)
    writer.add_image("sample", np.zeros((3, 4, 4)), 0)
    writer.add_audio("clip", np.zeros(800), 0, sample_rate=8000)
    writer.close()
    (result,) = import_tensorboard(tmp_path / "logs", root=tmp_path / "root")
    assert "sample: image summaries are not imported" in result.warnings
    assert "clip: audio summaries are not imported" in result.warnings
    assert tracklet.Api(tmp_path / "root").run(result.path).summary == {"loss": 0.5}
