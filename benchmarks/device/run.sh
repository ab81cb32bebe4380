#!/usr/bin/env bash
# Run THERE (the device machine: 16 idle cores, an NVIDIA GPU), from the repo root, after
# prepare.sh here: the measurements only such a machine can give, each writing under $OUT.
#  1. A2's v1 as issue #15 states it: an online run's v1 of a 1 GiB checkpoint against a plain PUT
#     of the same file over loopback (benchmarks/artifacts.py --only a2loop; target >= 0.8x).
#  2. The many-core estimate (artifacts_gil.py: lock-held and busiest-thread seconds per GiB), if
#     py-spy may attach there (gVisor may refuse ptrace: then only 1 and 3 report).
#  3. The system monitor on the real NVML driver (benchmarks/system_monitor.py: CPU per sample).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m venv --system-site-packages /tmp/venv
/tmp/venv/bin/python -m pip install -q --no-index --find-links .whl --no-deps .whl/*.whl 2>&1 | tail -3
export PATH=/tmp/venv/bin:$PATH PYTHONPATH=$PWD
{ nproc; uptime; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python --version; } \
  > "$OUT/machine.txt" 2>&1
work=/dev/shm; [ -w /dev/shm ] || work=/tmp
timeout 240 python benchmarks/artifacts.py --only a2loop --size-mib 1024 --rounds 3 --json "$OUT/a2loop.json" \
  > "$OUT/a2loop.txt" 2>&1; echo "a2loop rc=$?" >> "$OUT/machine.txt"
timeout 150 python benchmarks/artifacts_gil.py --size-mib 1024 --rounds 3 --work-dir "$work" \
  --json "$OUT/gil.json" > "$OUT/gil.txt" 2>&1; echo "gil rc=$?" >> "$OUT/machine.txt"
timeout 60 python benchmarks/system_monitor.py > "$OUT/system_monitor.txt" 2>&1
echo "system_monitor rc=$?" >> "$OUT/machine.txt"
uptime >> "$OUT/machine.txt"
tail -n 15 "$OUT"/*.txt
