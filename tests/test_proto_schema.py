"""The committed generated code matches proto/, and the schema keeps its compatibility promises."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("grpc_tools")


def test_generated_code_is_fresh():
    done = subprocess.run([sys.executable, "scripts/gen_proto.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_runtime_floor_matches_the_generator():
    generated = (REPO / "tracklet" / "proto" / "records_pb2.py").read_text()
    version = re.search(r"Protobuf Python Version: (\S+)", generated).group(1)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"protobuf>={version},' in pyproject


def test_record_kinds_leave_room_for_traces():
    from tracklet.proto import records_pb2 as pb

    numbers = {field.number for field in pb.Record.DESCRIPTOR.oneofs_by_name["kind"].fields}
    # 11, 12: artifact lineage; 13: media; 14: tables; 15: spans; 23: registry links; 24: seeds as set;
    # 30: an upload's gap; 16-19 (traces) stay free
    assert numbers == set(range(1, 16)) | {20, 21, 22, 23, 24, 30}
    assert pb.Record.DESCRIPTOR.fields_by_name["seeds"].number == 24
    assert pb.Record.DESCRIPTOR.fields_by_name["artifact_linked"].number == 23
    assert pb.Record.DESCRIPTOR.fields_by_name["media"].number == 13
    assert pb.Record.DESCRIPTOR.fields_by_name["table_logged"].number == 14
    assert pb.Record.DESCRIPTOR.fields_by_name["span"].number == 15
    assert "16-19 reserved for traces" in (REPO / "proto" / "tracklet" / "proto" / "records.proto").read_text()
