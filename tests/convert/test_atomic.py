"""Outputs are never half written, never stranded as temporary files, never silently replaced by a racing
writer, and a folder that refuses them is one BadInputError (real files, real locks, /proc)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from convert.atomic import TEMP_SUFFIX, check_writable, snapshot, sweep, write_atomic
from convert.errors import BadInputError


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_write_atomic_writes_whole_files_and_leaves_no_temporary_file(tmp_path):
    target = write_atomic(tmp_path / "report.json", "{}")
    assert target.read_text() == "{}" and temps(tmp_path) == []
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sweep_removes_the_temporary_files_of_dead_writers_only(tmp_path):
    dead = tmp_path / f".model.onnx.abc123{TEMP_SUFFIX}"
    dead.write_bytes(b"half a model")
    live = tmp_path / f".model.onnx.def456{TEMP_SUFFIX}"
    live.write_bytes(b"being written")
    other = tmp_path / ".model.onnx.tmp"  # not ours: never touched
    other.write_bytes(b"someone else's")
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds its lock (a separate open file description)
    try:
        assert sweep(tmp_path) == [dead.name]
        assert not dead.exists() and live.exists() and other.exists()
        write_atomic(tmp_path / "model.onnx", b"onnx")  # every write sweeps its folder first
        assert temps(tmp_path) == [live.name]
    finally:
        os.close(fd)
    assert sweep(tmp_path) == [live.name]  # its writer is gone now


def test_a_target_replaced_since_the_snapshot_is_not_overwritten(tmp_path):
    target = tmp_path / "model.onnx"
    before = snapshot(target)
    assert not before.exists
    write_atomic(target, b"from the other process")
    with pytest.raises(BadInputError, match="changed while this run was working") as err:
        write_atomic(target, b"from this run", unchanged_since=before)
    assert str(target) in err.value.line()
    assert target.read_bytes() == b"from the other process" and temps(tmp_path) == []
    now = snapshot(target)
    write_atomic(target, b"from this run", unchanged_since=now)  # unchanged: written
    assert target.read_bytes() == b"from this run"


def test_a_folder_that_refuses_files_is_one_bad_input_error(tmp_path):
    target = Path("/proc") / f"modelport-{os.getpid()}.json"
    for attempt in (lambda: write_atomic(target, "{}"), lambda: check_writable(target)):
        with pytest.raises(BadInputError) as err:
            attempt()
        assert err.value.line().startswith(f"{target}: cannot be written: /proc refuses it (")
    check_writable(tmp_path / "fine.json")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
    with pytest.raises(BadInputError, match="output directory does not exist"):
        check_writable(tmp_path / "missing" / "x.json")
