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


def test_a_chunked_commit_to_a_local_store_does_not_import_fsspec(tmp_path):
    """Packs in a local directory are written with the OS's calls, as blobs are: importing fsspec
    cost a process's first chunked commit 0.3-0.8 s on the artifact thread (A2 v1's throughput)."""
    code = textwrap.dedent('''
        import sys
        from tracklet.artifacts.entries import LocalFile
        from tracklet.artifacts.storage import ArtifactStore

        store = ArtifactStore(sys.argv[1], chunk_threshold=1 << 20)
        result = store.commit("ckpt", "model", {"m": LocalFile(sys.argv[2])}, project="p", aliases=[])
        assert "recipe" in result.manifest["m"].extra
        print(sorted(name for name in sys.modules if name.split(".")[0] == "fsspec"))
    ''')
    data = tmp_path / "model.bin"
    data.write_bytes(os.urandom(3 << 20))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "root"), str(data)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
