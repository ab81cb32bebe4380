"""A run's first ``log_artifact`` only freezes the file list and hands it to the artifact thread
(issue #15: ~1 ms on the caller): it imports no module on the caller's thread (an import there
waits for the GIL behind the run's other threads) and doesn't wait for a thread to start
(``threading.Thread.start`` blocks until the new thread has run: 0.2-10 ms on a loaded machine).
Counted, not timed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from serverproc import REPO

CHECK = textwrap.dedent('''
    import sys, threading
    import tracklet

    main = threading.get_ident()
    imported_here = []

    class Spy:
        def find_spec(self, name, path=None, target=None):
            if threading.get_ident() == main and name not in sys.modules:
                imported_here.append(name)
            return None

    run = tracklet.init(project="p", dir=sys.argv[1], settings={"console": "off", "capture_environment": False,
                                                                "system_metrics": False})
    artifact = tracklet.Artifact("model", "model")
    artifact.add_file(sys.argv[2])
    starts = []
    original = threading.Thread.start
    threading.Thread.start = lambda self: (starts.append(self.name) if threading.get_ident() == main else None,
                                           original(self))[1]
    sys.meta_path.insert(0, Spy())
    run.log_artifact(artifact)
    sys.meta_path.pop(0)
    threading.Thread.start = original
    artifact.wait()
    run.finish()
    print(imported_here, starts, artifact.version)
''')


def test_the_first_log_artifact_imports_nothing_and_waits_for_no_thread(tmp_path):
    data = tmp_path / "model.bin"
    data.write_bytes(os.urandom(1000))
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "root"), str(data)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]", "v0"]
