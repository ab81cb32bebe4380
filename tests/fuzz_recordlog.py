"""Fuzz target for the record log's frame scanner and replay (atheris / libFuzzer).

    python tests/fuzz_recordlog.py -runs=100000 -rss_limit_mb=0 CORPUS_DIR

(atheris's comparison instrumentation makes the process grow by ~100 MB per 1,000 inputs; the
scanner itself does not: hence no RSS limit on long runs.)

The input is a record log's bytes, checked by ``hardening_logs.fuzz_check``: scanning (strict
and resyncing), replaying, building the history, the system metrics and the damage summary must
never raise: damage is reported, not thrown. The one documented exception is ``RecordLogError``
from the strict scanner on a bad header. CI runs it for a bounded number of inputs
(tests/test_hardening_corruption.py); ``benchmarks/attacks.py`` runs the same check on 51,448
logs with a mutated frame under a valid checksum.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports(include=["tracklet.core.recordlog", "tracklet.core.decode", "tracklet.core.reader"]):
    from hardening_logs import fuzz_check

# The scratch log's folder: the caller's (TRACKLET_FUZZ_DIR: a test's tmp_path, removed with it; the
# fuzzer ends the process without running exit hooks), else a new one.
_PATH = os.path.join(os.environ.get("TRACKLET_FUZZ_DIR") or tempfile.mkdtemp(prefix="tracklet-fuzz-"), "run.tlog")


def check(data: bytes) -> None:
    """hardening_logs.fuzz_check: what benchmarks/attacks.py runs on 51,448 mutated logs."""
    fuzz_check(data, _PATH)


if __name__ == "__main__":
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
