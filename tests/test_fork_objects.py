"""Objects a forked child got from its parent (a ``Pool`` worker's ``tracklet.Api``, an ``Artifact``
the parent fetched, a run an earlier task finished) work there as the child's own: they open their
own stores, connections and clients (``core/forksafe.own``), never using or closing the parent's.
Fresh interpreters (``run_script``): a forked pytest worker would run the suite's exit handlers."""

from __future__ import annotations

import json
import os
import ssl

import pytest
from conftest import run_script

import tracklet

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the cases fork")


def test_an_api_and_an_artifact_made_in_the_parent_open_their_own_store_in_a_forked_child(root, tmp_path):
    # The parent's artifact store came with the fork as it was: a lock one of the parent's threads
    # held (here: reading the chunks of a large file) stayed held in the child for ever, and its SQLite
    # connections (the chunk index, the stat cache, the Api's store) were used by two processes. The
    # child's download waited for ever; now the child opens the store again, the parent's left alone.
    done = run_script(f"""
        import json, os, sys, threading
        import forkprobe
        import tracklet
        from tracklet.client.http import HttpClient

        run = tracklet.init(project="p", id="src", settings={{"system_metrics": False, "capture_environment": False}})
        run.log({{"loss": 1.0}})
        big = {str(tmp_path / "model.bin")!r}
        open(big, "wb").write(os.urandom(1 << 20))
        run.log_artifact(big, name="model", type="model").wait()
        run.finish()
        api = tracklet.Api({str(root)!r})
        artifact = api.artifact("p/model:v0")
        artifact.download({str(tmp_path / "parent")!r})  # the parent's store opened its chunk index
        parents_store = id(api.store)
        assert [r.id for r in api.runs("p", filter='state = "finished"')] == ["src"]
        http = HttpClient("http://127.0.0.1:9")
        parents_http = id(http._client)
        held = artifact._store._chunk_lock
        held.acquire()  # one of the parent's threads is reading chunks as the parent forks
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                got = artifact.download({str(tmp_path / "child")!r})
                same = open(os.path.join(got, "model.bin"), "rb").read() == open(big, "rb").read()
                finished = [r.id for r in api.runs("p", filter='state = "finished"')]
                own = id(api.store) != parents_store and id(http._client) != parents_http
                code = 0 if same and finished == ["src"] and own else 2
            finally:
                os._exit(code)
        child = forkprobe.reap(pid)  # a child stuck on the parent's lock: explained, ended
        held.release()
        # the parent's store and client are as they were: used here again, never closed by the child
        parent_ok = id(api.store) == parents_store and id(http._client) == parents_http and \\
            [r.id for r in api.runs("p", filter='state = "finished"')] == ["src"]
        artifact.download({str(tmp_path / "parent2")!r})
        print(json.dumps({{"child": child, "parent": parent_ok}}))
    """, env={"TRACKLET_ARTIFACT_CHUNK_THRESHOLD": "4096"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"child": 0, "parent": True}, done.stderr


def test_the_artifact_caches_and_chunk_index_used_directly_open_their_own_in_a_forked_child(tmp_path):
    # Outside an Artifact (which opens its store again), a BlobCache, a StatCache, a ChunkIndex or
    # an ArtifactStore held by the program came with the fork as they were: their SQLite
    # connections the parent's, their locks held where one of the parent's threads held them (here:
    # every one, as a download, a commit and a chunk lookup would). The child waited for ever; now
    # each opens its own connection at its first use there, reads what the parent wrote and writes
    # what the parent then reads, and the parent's connections work on, never closed by the child.
    done = run_script(f"""
        import hashlib, json, os
        from pathlib import Path
        import forkprobe
        from tracklet.artifacts.cache import BlobCache
        from tracklet.artifacts.hashing import StatCache
        from tracklet.artifacts.packs import ChunkIndex, PackInfo
        from tracklet.artifacts.storage import ArtifactStore

        here = Path({str(tmp_path)!r})
        def blob(text):
            (here / text).write_text(text)
            return here / text, hashlib.sha256(text.encode()).hexdigest()

        cache = BlobCache(here / "cache", cap_bytes=1 << 20)
        cache.put_file(*blob("parent's"))
        stats = StatCache(here / "stats.sqlite")
        stats.put_many({{("a", 1, 1, 1): "d" * 64}})
        index = ChunkIndex(here / "chunks.sqlite")
        index.add_pack(PackInfo("p" * 64, 10, ((b"1" * 32, 0, 10),)))
        store = ArtifactStore(here / "root")
        parents = [id(cache._db), id(stats._db), id(index._connection), id(store._chunk_lock)]
        for lock in (cache._thread_lock, stats._lock, store._chunk_lock):
            lock.acquire()  # held by one of the parent's threads as it forks
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                path, digest = blob("child's")
                cache.put_file(path, digest)
                with cache.get(blob("parent's")[1]) as got:
                    read = got.read_text() if got else None
                known = stats.get_many([("a", 1, 1, 1)])
                stats.put_many({{("b", 2, 2, 2): "e" * 64}})
                located = index.locate([b"1" * 32])
                index.add_pack(PackInfo("q" * 64, 10, ((b"2" * 32, 0, 10),)))
                with store._chunk_lock:
                    store.chunks()[1].locate([b"3" * 32])
                own = [id(cache._db), id(stats._db), id(index._connection), id(store._chunk_lock)]
                ok = read == "parent's" and known == {{("a", 1, 1, 1): "d" * 64}} and \
                    located == {{b"1" * 32: ("p" * 64, 0, 10)}} and not set(own) & set(parents)
                code = 0 if ok else 2
            finally:
                os._exit(code)
        child = forkprobe.reap(pid)  # a child stuck on the parent's lock: explained, ended
        for lock in (cache._thread_lock, stats._lock, store._chunk_lock):
            lock.release()
        mine = [id(cache._db), id(stats._db), id(index._connection), id(store._chunk_lock)] == parents
        with cache.get(blob("child's")[1]) as got:
            cached = got is not None
        learned = stats.get_many([("b", 2, 2, 2)]) == {{("b", 2, 2, 2): "e" * 64}}
        located = index.locate([b"2" * 32]) == {{b"2" * 32: ("q" * 64, 0, 10)}}
        print(json.dumps({{"child": child, "parent": [mine, cached, learned, located]}}))
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"child": 0, "parent": [True] * 4}, done.stderr


def test_a_forked_pool_workers_next_task_records_into_the_run_an_earlier_task_finished(root):
    # A Pool worker (fork) keeps the run it inherited for all its tasks: after one task's finish()
    # (which ends the worker's part), the next task's log() raised "this run has finished" into the
    # user's code. It joins the run again as the worker's part, as a pickled run does (each task
    # unpickles it afresh); finish() first, before any use, is the same.
    done = run_script("""
        import json, multiprocessing as mp, os, warnings
        import tracklet

        RUN = tracklet.init(project="p", id="pool", settings={"system_metrics": False, "capture_environment": False})

        def logs_and_finishes(value):
            RUN.log({"first": value})
            RUN.finish()

        def only_finishes():
            RUN.finish()

        def logs(key, value):
            RUN.log({key: value})
            RUN.summary[key + "/best"] = value
            return os.getpid()

        if __name__ == "__main__":
            warnings.simplefilter("error")  # and no warning either: the run records
            RUN.log({"loss": 1.0})
            pids = []
            for first, args in ((logs_and_finishes, (1,)), (only_finishes, ())):
                with mp.get_context("fork").Pool(1) as pool:
                    pool.apply(first, args)
                    pids.append(pool.apply(logs, ("later/" + first.__name__, 2)))
                    pool.apply(logs, ("then/" + first.__name__, 3))
            RUN.finish()
            print(json.dumps(pids))
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    pids = json.loads(done.stdout.strip().splitlines()[-1])
    recorded = tracklet.Api(root).run("p/pool")
    assert len(recorded.parts) == 2 and all(part["state"] == "finished" for part in recorded.parts.values())
    history = recorded.history()
    assert [v for v in history["first"] if v is not None] == [1]
    for name in ("logs_and_finishes", "only_finishes"):
        assert [v for v in history[f"later/{name}"] if v is not None] == [2]
        assert [v for v in history[f"then/{name}"] if v is not None] == [3]
        assert recorded.summary[f"later/{name}/best"] == 2
    assert len(set(pids)) == 2


# What a client's build needs, with no server: an endpoint that refuses (s3fs connects at once; gcsfs
# makes no request), no credentials from this machine, gcsfs's plain JSON-API filesystem (its default
# asks each bucket over gRPC whether it is a zonal one).
_CLIENTS = {
    "s3": ("_S3", {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9"}),
    "gs": ("_GCS", {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                    "NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": os.devnull}),
}


@pytest.mark.parametrize("scheme", sorted(_CLIENTS))
def test_a_child_forked_while_another_thread_builds_an_object_store_client_can_build_its_own(scheme):
    # Making the process's first S3 client (an s3:// reference's, an artifact directory on S3)
    # imports s3fs (aiohttp builds TLS contexts as it is imported) and sets up aiobotocore's session
    # on fsspec's IO thread: a child forked meanwhile inherited a module half-imported, its import
    # lock held by a thread it doesn't have, and its own first S3 client waited for ever (measured
    # without the wait: every child forked 5-700 ms into the build hung). A fork now waits for the
    # build (forksafe.section, artifacts/fsbuild.py), as long as the build works: on a loaded machine
    # it took 5-8 s (0.4 CPU s), a wait bounded by 5 s of wall-clock time ran out and the child forked
    # amid s3fs's import hung on its import lock (1 run in 3 of the fork test files; a bound on the
    # time the build didn't work now, forksafe._Patience). A gs:// client's build likewise imports
    # gcsfs (and aiohttp, google-auth) and makes its session's TLS context and connector (fsbuild.py's
    # _gcs_session_in_sections, on fsspec's IO thread). Fresh processes, forking 2 ms (in the import)
    # and 300 ms into the real client's build (no server needed); each child builds its own under a
    # bound (forkprobe: one still running is explained, then ended).
    if scheme == "s3":
        pytest.importorskip("s3fs")  # (gcsfs is in the test extra; not imported here: tests/gcsserver.py)
    store, variables = _CLIENTS[scheme]
    attempt = f"""
        import os, ssl, sys
        os.environ.update({variables!r})
        import forkprobe
        from tracklet.artifacts import references

        def in_child():
            references.{store}("probe").fs()
            ssl.create_default_context()

        print(forkprobe.fork_amid(references.{store}("probe").fs, float(sys.argv[1]), in_child))
    """
    for delay in ("0.002", "0.3"):
        done = run_script(attempt, args=(delay,), timeout=120)
        assert (done.returncode, done.stdout.strip()) == (0, "0"), f"forked {delay} s into the build: {done.stderr}"


def test_a_gs_client_gets_a_connector_in_sections_unless_gcsfs_presents_a_client_certificate(tmp_path, monkeypatch):
    # The connector whose TLS context was made in the build's section (the test in
    # test_child_processes.py shows its handshake steps waiting for a fork) replaces aiohttp's default
    # context only: where google-auth has gcsfs present a client certificate (mutual TLS), gcsfs's own
    # context stays (fsbuild.py reads gcsfs's _use_client_cert). No request is made.
    from tracklet.artifacts import references
    from tracklet.core import forksafe

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "https://127.0.0.1:9")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    config = tmp_path / "certificate_config.json"
    config.write_text(json.dumps({"cert_configs": {"workload": {"cert_path": str(tmp_path / "cert.pem"),
                                                                "key_path": str(tmp_path / "key.pem")}}}))
    monkeypatch.setenv("GOOGLE_API_CERTIFICATE_CONFIG", str(config))
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true")
    fs = references._GCS("probe").fs()
    assert fs._use_client_cert and "connector" not in fs.session_kwargs
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
    first, second = references._GCS("probe").fs(), references._GCS("probe").fs()
    contexts = [fs.session_kwargs["connector"]._ssl for fs in (first, second)]  # (aiohttp's private name)
    assert contexts[0] is contexts[1]  # one per process
    assert contexts[0].sslobject_class is forksafe.tls_object_class()
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
