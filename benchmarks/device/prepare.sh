#!/usr/bin/env bash
# Run HERE (the dev machine, with network to the package index) before a device run: downloads the
# wheels the device machine lacks (its image has Python 3.12, torch, numpy, psutil, httpx, pyyaml,
# click, rich, nvidia-ml-py; nothing can be fetched there) into .whl/ at the repo root, which
# .git/info/exclude must ignore. Versions are the ones installed in this checkout's .venv, so the
# device runs what the tests ran. Then:
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"], timeout_s=590)
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
packages="protobuf platformdirs sqlalchemy alembic mako pyfastcdc blake3 fsspec fastapi starlette pydantic
pydantic-core annotated-types typing-inspection uvicorn httptools httpx httpcore h11 anyio py-spy greenlet
typing-extensions"
pins=()
for name in $packages; do
  version=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  pins+=("$name==$version")
done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl "${pins[@]}"
du -sh .whl
