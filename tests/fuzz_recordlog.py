"""Fuzz target for the record log's frame scanner and replay (atheris / libFuzzer).

    python tests/fuzz_recordlog.py -runs=100000 -rss_limit_mb=0 CORPUS_DIR

(atheris's comparison instrumentation makes the process grow by ~100 MB per 1,000 inputs; the
scanner itself does not: hence no RSS limit on long runs.)

The input is a record log's bytes. Scanning (strict and resyncing), replaying, building the
history, the system metrics and the damage summary must never raise: damage is reported, not
thrown. The one documented exception is ``RecordLogError`` from the strict scanner on a bad
header. CI runs it for a bounded number of inputs (tests/test_hardening_corruption.py).
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["tracklet.core.recordlog", "tracklet.core.decode", "tracklet.core.reader"]):
    from tracklet.core.reader import damage_summary, replay
    from tracklet.core.recordlog import RecordLogError, scan

_PATH = os.path.join(tempfile.mkdtemp(prefix="tracklet-fuzz-"), "run.tlog")


def check(data: bytes) -> None:
    try:
        strict = scan(data)
    except RecordLogError:
        pass
    else:
        assert strict.end_offset <= len(data)
    loose = scan(data, resync=True)
    assert loose.end_offset <= len(data)
    assert all(offset + 8 + len(payload) <= len(data) for offset, payload in loose.payloads)
    with open(_PATH, "wb") as handle:
        handle.write(data)
    state = replay(_PATH)
    state.history()
    state.history(["loss", "missing"])
    state.system_metrics()
    damage_summary(state)


if __name__ == "__main__":
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
