"""An edit of a committed version unsets at most ``MAX_UNSET_METADATA_KEYS`` metadata keys, whose
JSON is at most ``MAX_METADATA_BYTES`` (as the keys set are): more, or a longer key, is refused
with an error naming the bound, on the Python API, the CLI and the server (``PATCH
.../versions/vN``), and nothing changes. ``artifact.save()`` of metadata that lost more keys than
that sends the metadata whole instead. Before session 26 the keys to unset were unbounded in
count (in Python) and in length (everywhere)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import tracklet
from tracklet.artifacts.fields import MAX_METADATA_BYTES, MAX_UNSET_METADATA_KEYS, VersionEdit
from tracklet.cli.main import main
from tracklet.errors import ArtifactError
from tracklet.server.app import create_app

KEYS = MAX_UNSET_METADATA_KEYS + 200


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    (tmp_path / "m.bin").write_bytes(b"weights")
    run = tracklet.init(project="p", dir=str(data), settings={"console": "off", "capture_environment": False})
    artifact = tracklet.Artifact("m", "model", metadata={f"k{i}": i for i in range(KEYS)})
    artifact.add_file(str(tmp_path / "m.bin"))
    run.log_artifact(artifact).wait()
    run.finish()
    return data


@pytest.mark.parametrize(("keys", "problem"), [
    ([f"k{i}" for i in range(MAX_UNSET_METADATA_KEYS + 1)], f"over {MAX_UNSET_METADATA_KEYS:,} metadata keys to unset"),
    (["x" * MAX_METADATA_BYTES], "metadata keys to unset are over"),
    (["k1", 5], "must be a string"),
])
def test_an_edit_unsetting_too_many_or_too_long_keys_is_refused(keys, problem):
    with pytest.raises(ArtifactError, match=problem):
        VersionEdit(unset_metadata=keys).checked("artifact p/m:v0")
    assert VersionEdit(unset_metadata=keys[:MAX_UNSET_METADATA_KEYS] if len(keys) > 2 else ["k1"]).checked("a")


def test_the_bounds_hold_on_the_cli_and_the_server_and_save_sends_metadata_whole(root):
    # The CLI unsets keys the version has (each checked first), through save(): more than an edit
    # may unset are sent as the whole metadata.
    many = [arg for i in range(MAX_UNSET_METADATA_KEYS + 1) for arg in ("--unset-metadata", f"k{i}")]
    result = CliRunner().invoke(main, ["--dir", str(root), "artifact", "edit", "p/m:v0", *many], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tracklet.Api(root).artifact("p/m:v0").metadata == {f"k{i}": i for i in range(MAX_UNSET_METADATA_KEYS + 1, KEYS)}
    result = CliRunner().invoke(main, ["--dir", str(root), "artifact", "edit", "p/m:v0", "--unset-metadata",
                                       "y" * MAX_METADATA_BYTES], catch_exceptions=False)
    assert result.exit_code == 2 and "has no such metadata key; nothing was changed" in result.output

    version = tracklet.Api(root).artifact("p/m:v0")
    version.metadata.clear()
    version.metadata["only"] = 1
    version.save()
    assert tracklet.Api(root).artifact("p/m:v0").metadata == {"only": 1}

    url = "/api/v1/projects/p/artifacts/m/versions/v0"
    with TestClient(create_app(root, auth=False, shared_root=True)) as http:
        long_key = http.patch(url, json={"description": "no", "unset_metadata": ["z" * (MAX_METADATA_BYTES + 1)]})
        assert long_key.status_code == 400 and "metadata keys to unset are over" in long_key.json()["detail"]
        too_many = http.patch(url, json={"description": "no",
                                         "unset_metadata": [f"k{i}" for i in range(MAX_UNSET_METADATA_KEYS + 1)]})
        assert too_many.status_code in (400, 422) and "unset_metadata" in too_many.text
        assert http.patch(url, json={"unset_metadata": ["only", "gone"]}).status_code == 200
    after = tracklet.Api(root).artifact("p/m:v0")
    assert after.metadata == {} and after.description != "no"
