"""Model registry lookups (issue #18): how long resolving a registry version takes with many versions.

    python benchmarks/registry.py                      # 10,000 versions in one collection (a short run)
    python benchmarks/registry.py --versions 100000    # the issue's size: target p99 <= 5 ms

A fresh data root gets ``--versions`` artifact versions (written as version files, spread over 100
source collections, as many runs' checkpoints would be) all linked into one registry collection
``model/bench`` (rows inserted in bulk: building is not what is measured), with aliases
``production`` and ``staging`` on random versions. Then, ``--lookups`` times each, in one process
(the registry's connection pool warm, as in a serving process):

- ``tracklet.Api().artifact("model/bench:production")`` and ``("models:/bench@production")``: the
  registry row, the alias, the linked version's file;
- ``("models:/bench/N")`` and ``("model/bench:vN")`` for random N;
- an alias move (``ModelRegistry.set_alias``, one transaction with its history event).

Times are wall-clock per call; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

SOURCES = 100  # source collections the versions are spread over


def build(root: Path, versions: int, seed: int = 0) -> dict[str, int]:
    """The data root: version files and a registry collection linking them all; the aliases' versions."""
    import sqlalchemy as sa

    from tracklet.artifacts.registry import VersionInfo
    from tracklet.registry.service import open_local
    from tracklet.registry.tables import registry_aliases, registry_collections, registry_links

    rng = random.Random(seed)
    now = time.time()
    links = []
    for number in range(versions):
        source, source_version = f"ckpt-{number % SOURCES}", number // SOURCES
        digest = f"{rng.getrandbits(256):064x}"
        directory = root / "artifacts" / "projects" / "bench" / source / "versions"
        if source_version == 0:
            directory.mkdir(parents=True, exist_ok=True)
        info = VersionInfo(project="bench", name=source, version=source_version, type="model", digest=digest,
                           manifest=f"{rng.getrandbits(256):064x}", size=1 << 20, file_count=1, created_at=now)
        (directory / f"v{source_version}.json").write_text(json.dumps(info.to_json()))
        links.append({"registry": "model", "collection": "bench", "version": number, "source_project": "bench",
                      "source_name": source, "source_version": source_version, "source_digest": digest,
                      "linked_at": now, "linked_by": "bench"})
    registry = open_local(root)
    assert registry is not None
    aliases = {"production": rng.randrange(versions), "staging": rng.randrange(versions)}
    with registry.engine.begin() as connection:
        connection.execute(registry_collections.insert().values(registry="model", collection="bench", type="model",
                                                                next_version=versions, created_at=now, updated_at=now))
        for start in range(0, versions, 10_000):
            connection.execute(registry_links.insert(), links[start:start + 10_000])
        connection.execute(registry_aliases.insert(), [{"registry": "model", "collection": "bench", "alias": alias,
                                                        "version": number} for alias, number in aliases.items()])
    with registry.engine.connect() as connection:
        connection.execute(sa.text("ANALYZE"))
    return aliases


def timed(call, count: int) -> list[float]:
    for _ in range(min(20, count)):  # warm: imports, the connection pool, the page cache
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=None, help="Write the results here too.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tracklet-registry-bench-") as directory:
        root = Path(directory)
        os.environ["TRACKLET_DIR"] = str(root)
        os.environ.pop("TRACKLET_ARTIFACT_DIR", None)
        import tracklet

        started = time.perf_counter()
        aliases = build(root, args.versions)
        built = time.perf_counter() - started
        api = tracklet.Api(root)
        rng = random.Random(1)
        expected = aliases["production"]
        assert api.artifact("models:/bench@production").version == f"v{expected}"
        cases = {
            "Api().artifact('model/bench:production')": lambda: api.artifact("model/bench:production"),
            "Api().artifact('models:/bench@production')": lambda: api.artifact("models:/bench@production"),
            "Api().artifact('models:/bench/N'), random N": lambda: api.artifact(
                f"models:/bench/{rng.randrange(args.versions)}"),
            "Api().artifact('model/bench:vN'), random N": lambda: api.artifact(
                f"model/bench:v{rng.randrange(args.versions)}"),
        }
        registry = api.registry
        moves = iter(range(10**9))

        def move() -> None:
            registry.set_alias("model", "bench", "canary", f"v{next(moves) % args.versions}", actor="bench")

        cases["alias move (with its history event)"] = move
        results = {}
        rows = []
        for label, call in cases.items():
            samples = timed(call, args.lookups)
            results[label] = {"p50_ms": statistics.median(samples), "p99_ms": p99(samples)}
            rows.append([label, f"{statistics.median(samples):.2f}", f"{p99(samples):.2f}"])
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{args.versions:,} versions in model/bench (built in {built:.1f}s), {args.lookups:,} calls each, "
              f"load average {load:.1f}")
        print_table(rows, ["call", "p50 ms", "p99 ms"])
        write_json(args.json, {"versions": args.versions, "lookups": args.lookups, "load": load, "results": results})


if __name__ == "__main__":
    main()
