"""Chunk-level dedupe (issue #15, A2) on a synthetic checkpoint, all in one run:

    python benchmarks/chunking.py            # 1 GiB checkpoint
    python benchmarks/chunking.py --quick    # 256 MiB, same measurements

v1: chunk + hash (blake3 per chunk, sha256 of the file) + pack into a fresh local store, as a
ratio of a plain file copy (``shutil.copyfile``) of the same file measured in the same run,
alternately, the median of ``--repeat`` tries each (target >= 0.8). Both read the source from the
page cache. Packs are written without fsync, like the copy; the fsync'd figure is printed too.

v2, the bytes a new version adds to a store that holds v1 (target <= 10%):
  A: 5% of the bytes changed, in 20 of 400 tensors (a partly retrained checkpoint);
  B: 5% changed in ~1,000 scattered 52 KB pieces (edits smaller than a chunk: the hard case);
  C: A plus 7 bytes of header growth at the front (shifts every offset: fixed-size chunks store 100%).
Whole-file stores (W&B, MLflow, DVC) add 100% in all three.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402
from tracklet.artifacts.chunking import chunk_file  # noqa: E402
from tracklet.artifacts.packs import ChunkIndex, PackReader, PackStore, PackWriter, reassemble  # noqa: E402

MiB = 1024 * 1024
TENSORS = 400
CHANGED_TENSORS = 20


def write_checkpoint(path: Path, size: int, seed: int = 0) -> tuple[int, list[tuple[int, int]]]:
    """A safetensors-like file: an 8-byte header length, a JSON header, then TENSORS random
    tensors. Returns the header length and each tensor's (offset, size)."""
    tensor_size = size // TENSORS
    header = b'{"__metadata__":{"format":"pt"},"n":%d}' % TENSORS
    rng = random.Random(seed)
    spans = []
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for _ in range(TENSORS):
            spans.append((f.tell(), tensor_size))
            f.write(rng.randbytes(tensor_size))
    return 8 + len(header), spans


def variant(src: Path, dest: Path, spans: list[tuple[int, int]], header_end: int, scenario: str) -> None:
    """Write v2 of ``src`` for a scenario (A, B or C) to ``dest``."""
    data = bytearray(src.read_bytes())
    rng = random.Random(42)
    if scenario in ("A", "C"):
        for offset, size in rng.sample(spans, CHANGED_TENSORS):
            data[offset : offset + size] = rng.randbytes(size)
    elif scenario == "B":
        target = len(data) // 20
        piece = 52_000
        for _ in range(target // piece):
            offset, size = spans[rng.randrange(len(spans))]
            start = offset + rng.randrange(size - piece)
            data[start : start + piece] = rng.randbytes(piece)
    if scenario == "C":
        data[header_end:header_end] = b" " * 7  # the JSON header grew by 7 bytes
    dest.write_bytes(data)
    del data


CPU_SECONDS: dict[str, list[float]] = {}


def timed(fn, label: str = "") -> float:
    """Wall seconds of ``fn()``; with a label, also keeps the CPU seconds this process spent (all
    threads, user + system: the kernel's copy in ``copyfile`` counts), which a shared machine's
    load disturbs less than wall time."""
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    if label:
        CPU_SECONDS.setdefault(label, []).append(time.process_time() - cpu)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 256 MiB checkpoint instead of 1 GiB")
    parser.add_argument("--size-mib", type=int, help="checkpoint size (overrides --quick)")
    parser.add_argument("--repeat", type=int, default=3, help="tries of copy and pack each (median)")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    size = (args.size_mib or (256 if args.quick else 1024)) * MiB
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="tracklet-chunking-") as tmp:
        work = Path(tmp)
        v1 = work / "v1.safetensors"
        header_end, spans = write_checkpoint(v1, size)
        size = v1.stat().st_size
        v1.read_bytes()  # into the page cache, for both contenders alike

        # ---- v1: chunk + hash + pack against a plain copy, alternately
        copy_times, pack_times = [], []
        for i in range(args.repeat):
            dest = work / f"copy{i}.bin"
            copy_times.append(timed(lambda dest=dest: shutil.copyfile(v1, dest), "copy"))
            dest.unlink()
            store_dir = work / f"try{i}"
            writer = PackWriter(PackStore(store_dir), durable=False)
            pack_times.append(timed(lambda writer=writer: (writer.write_file(v1), writer.close()), "pack"))
            shutil.rmtree(store_dir)
        copy_s, pack_s = statistics.median(copy_times), statistics.median(pack_times)
        hash_s = timed(lambda: chunk_file(v1))

        store = PackStore(work / "store")
        index = ChunkIndex(work / "store" / "chunks.sqlite")
        writer = PackWriter(store, index, durable=True)
        durable_s = timed(lambda: (writer.write_file(v1), writer.close()))
        recipe1 = chunk_file(v1)
        v1_ids = set(recipe1.chunk_ids)

        # ---- v2: what each scenario adds to a store that holds v1
        fractions = {}
        for scenario in ("A", "B", "C"):
            v2 = work / f"v2{scenario}.safetensors"
            variant(v1, v2, spans, header_end, scenario)
            scenario_store = PackStore(work / f"store{scenario}")
            with PackWriter(scenario_store, durable=False) as w2:
                recipe2 = w2.write_file(v2, have=v1_ids)
            fractions[scenario] = w2.new_bytes / recipe2.size
            if scenario == "A":  # store it for real and rebuild it from v1's and v2's packs
                with PackWriter(store, index, durable=False) as w3:
                    w3.write_file(v2)
                out = work / "v2A.rebuilt"
                rebuild_s = timed(lambda recipe2=recipe2, out=out: reassemble(recipe2, PackReader(store, index), out))
                assert hashlib.sha256(out.read_bytes()).hexdigest() == recipe2.sha256
                out.unlink()
            v2.unlink()
        index.close()

    load_after = os.getloadavg()

    def gbps(seconds: float) -> str:
        return f"{size / seconds / 1e9:.2f} GB/s"

    ratio = copy_s / pack_s
    cpu_copy, cpu_pack = statistics.median(CPU_SECONDS["copy"]), statistics.median(CPU_SECONDS["pack"])
    print(
        f"checkpoint: {size / MiB:.0f} MiB, {TENSORS} tensors; {os.cpu_count()} CPUs; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"chunks: {len(recipe1.chunks)}, mean {size / len(recipe1.chunks) / 1024:.1f} KiB")
    print_table(
        [
            ("plain copy (shutil.copyfile)", gbps(copy_s), ""),
            ("chunk + hash only (no writes)", gbps(hash_s), ""),
            ("v1: chunk + hash + pack", gbps(pack_s), f"{ratio:.2f} x copy (target >= 0.8)"),
            (
                "CPU seconds per GiB: copy / pack",
                f"{cpu_copy * MiB * 1024 / size:.2f} / {cpu_pack * MiB * 1024 / size:.2f}",
                "all threads, user + system",
            ),
            ("v1: same, packs fsync'd", gbps(durable_s), f"{copy_s / durable_s:.2f} x copy"),
            ("v2 A rebuilt from packs (verified)", gbps(rebuild_s), ""),
            ("v2 A: 5% in 20 tensors", f"{fractions['A']:.1%}", "new bytes (target <= 10%; whole-file: 100%)"),
            ("v2 B: 5% in ~1,000 x 52 KB", f"{fractions['B']:.1%}", "new bytes (whole-file: 100%)"),
            ("v2 C: A + 7-byte header growth", f"{fractions['C']:.1%}", "new bytes (target <= 10%; fixed-size: 100%)"),
        ],
        header=("measure", "value", "note"),
    )
    write_json(
        args.json,
        {
            "size": size,
            "chunks": len(recipe1.chunks),
            "copy_s": copy_times,
            "pack_s": pack_times,
            "hash_s": hash_s,
            "cpu_s": CPU_SECONDS,
            "durable_pack_s": durable_s,
            "rebuild_s": rebuild_s,
            "ratio_vs_copy": ratio,
            "new_bytes_fraction": fractions,
            "load": [load_before, load_after],
        },
    )


if __name__ == "__main__":
    main()
