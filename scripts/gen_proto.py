"""Regenerate tracklet/proto/*_pb2.py(i) from proto/ (the schema is the source of truth).

    python scripts/gen_proto.py            # rewrite the committed generated code
    python scripts/gen_proto.py --check    # exit 1 if the committed code is stale

Uses the protoc bundled with grpcio-tools (pinned in pyproject's test extra), so every machine
generates byte-identical code. The runtime floor in pyproject (protobuf>=...) must match the
"Protobuf Python Version" printed at the top of the generated file.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = sorted((ROOT / "proto").rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    for schema in SCHEMAS:
        relative = schema.relative_to(ROOT / "proto")
        code = protoc.main(
            ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", f"--pyi_out={out}", str(relative)]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {relative}")
    return sorted(p.relative_to(out) for p in out.rglob("*_pb2.py*"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        generated = generate(out)
        stale = [p for p in generated if not (ROOT / p).exists() or not filecmp.cmp(out / p, ROOT / p, shallow=False)]
        if args.check:
            for path in stale:
                print(f"stale generated code: {path} (run python scripts/gen_proto.py)")
            return 1 if stale else 0
        for path in generated:
            (ROOT / path).write_bytes((out / path).read_bytes())
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
