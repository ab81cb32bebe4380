"""Edits of a logged artifact that used to be lost silently: a nested metadata edit passed
``save()`` unsaved (the object read shared its nested dicts with the version, so the check compared
the edit with itself; since session 24 ``save()`` saves metadata edits), and an alias appended
while the version was still being stored went to a copy (``save()`` then said the version "can't
change any more")."""

from __future__ import annotations

import threading
import warnings

import pytest


def _logged(tracklet, start, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"abc")
    run = start(project="p")
    artifact = tracklet.Artifact("m", "model", metadata={"cfg": {"lr": 0.1}})
    artifact.add_file(str(tmp_path / "m.bin"))
    run.log_artifact(artifact).wait()
    run.finish()
    return artifact


def test_a_nested_metadata_edit_is_saved_by_save_not_dropped(root, start, tmp_path):
    import tracklet

    logged = _logged(tracklet, start, tmp_path)
    logged.metadata["cfg"]["lr"] = 0.3
    logged.aliases.append("best")
    logged.save()
    assert tracklet.Api(root).artifact("p/m:best").metadata == {"cfg": {"lr": 0.3}}

    api = tracklet.Api(root)
    read = api.artifact("p/m:v0")
    other = api.artifact("p/m:v0")
    read.metadata["cfg"]["lr"] = 0.5  # a nested edit: not shared with the version read, nor with another read
    assert other.metadata == {"cfg": {"lr": 0.3}}
    read.aliases.append("nested")
    read.save()
    again = tracklet.Api(root).artifact("p/m:v0")
    assert again.metadata == {"cfg": {"lr": 0.5}} and again.aliases == ["latest", "best", "nested"]
    again.aliases.append("kept")  # an alias edit alone saves too
    again.save()
    assert tracklet.Api(root).artifact("p/m:kept").version == "v0"


def test_aliases_of_a_version_being_stored_refuse_edits_until_wait(root, start, tmp_path, monkeypatch):
    """The worker commits with the aliases the version had when logged: an edit meanwhile raises
    saying to wait() first (it went to a copy, lost), and so does save()."""
    import tracklet
    from tracklet.artifacts import storage
    from tracklet.errors import ArtifactError

    release = threading.Event()
    commit = storage.ArtifactStore.commit

    def held_commit(self, *args, **kwargs):  # the real commit, once the test has looked
        release.wait(30)
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(storage.ArtifactStore, "commit", held_commit)
    (tmp_path / "d.bin").write_bytes(b"data")
    run = start(project="p")
    artifact = tracklet.Artifact("ds", "dataset")
    artifact.add_file(str(tmp_path / "d.bin"))
    run.log_artifact(artifact, aliases=["train"])
    try:
        assert artifact.state == "pending" and artifact.aliases == ["train"]
        with pytest.raises(ArtifactError, match=r"still being stored .*call wait\(\) first"):
            artifact.aliases.append("best")
        with pytest.raises(ArtifactError, match=r"still being stored: call wait\(\) first"):
            artifact.save()
        with pytest.raises(ArtifactError, match=r"still being stored with tags \[\]: call wait\(\) first"):
            artifact.tags.append("late")
        assert artifact.aliases == ["train"]
    finally:
        release.set()
    artifact.wait()
    artifact.aliases.append("best")
    artifact.save()
    run.finish()
    assert sorted(tracklet.Api(root).artifact("p/ds:v0").aliases) == ["best", "latest", "train"]


def test_save_during_an_online_runs_upload_waits_for_it_and_moves_the_servers_copy_too(root, tmp_path, servers,
                                                                                       monkeypatch):
    """The version is committed locally before the upload sets the server's version number:
    a save() in between must wait for it, then move the aliases of the server's copy as well."""
    import tracklet
    from conftest import QUIET
    from tracklet.artifacts.worker import ArtifactWorker
    from tracklet.errors import TrackletWarning

    release = threading.Event()
    upload = ArtifactWorker._upload

    def held_upload(self, *args, **kwargs):  # the real upload, once the test has called save()
        release.wait(60)
        return upload(self, *args, **kwargs)

    monkeypatch.setattr(ArtifactWorker, "_upload", held_upload)
    server = servers(tmp_path / "server")
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    (tmp_path / "d.bin").write_bytes(b"data")
    artifact = tracklet.Artifact("ds", "dataset")
    artifact.add_file(str(tmp_path / "d.bin"))
    run.log_artifact(artifact)
    try:
        for _ in range(6000):  # committed locally, its upload held
            if artifact.state == "committed":
                break
            threading.Event().wait(0.01)
        assert artifact.state == "committed"
        artifact.aliases.append("best")
        threading.Timer(0.2, release.set).start()  # save() must wait for the upload to see its outcome
        with warnings.catch_warnings():
            warnings.simplefilter("error", TrackletWarning)
            artifact.save()
    finally:
        release.set()
        run.finish()
    assert sorted(tracklet.Api(root).artifact("p/ds:v0").aliases) == ["best", "latest"]
    with tracklet.Api(base_url=server.url) as api:
        assert api.artifact("p/ds:best").version == "v0"
