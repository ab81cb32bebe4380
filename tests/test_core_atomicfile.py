"""Small files other processes read at any moment (credentials, sweep state, the artifact
registry) are replaced whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from tracklet.core.atomicfile import replace_atomically


def test_a_replacement_is_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    replace_atomically(path, b"old")
    replace_atomically(path, b"new", durable=False)
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        replace_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_mode_is_set_from_the_first_byte(tmp_path):
    path = tmp_path / "credentials.json"
    replace_atomically(path, b"{}", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
