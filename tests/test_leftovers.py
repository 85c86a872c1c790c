"""Leftovers of killed runs: removed when no process holds their lock, kept while one does.

A lock is held per open file description, so a second opening in this process contends
with the first exactly as another process would; a process killed by SIGKILL is the
real case, and tests/hardening/test_hardening_faults.py runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnstat.leftovers import (
    SPILL_PREFIX,
    TEMPORARY_SUFFIX,
    Leftover,
    new_file,
    new_folder,
    removal_notes,
    remove_stale,
)


def test_a_held_temporary_file_is_kept_and_a_released_one_removed(tmp_path: Path) -> None:
    path, held = new_file(tmp_path, "out.pt")
    assert path.name.startswith(".out.pt.") and path.name.endswith(TEMPORARY_SUFFIX)
    path.write_bytes(b"x" * 100)
    assert remove_stale(tmp_path) == [] and path.exists()
    held.release()  # as the kernel does when the process dies
    assert remove_stale(tmp_path) == [Leftover(path, 100)]
    assert not path.exists()


def test_a_held_spill_folder_is_kept_and_a_released_one_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    folder, held = new_folder()
    assert folder.parent == tmp_path and folder.name.startswith(SPILL_PREFIX)
    (folder / "3.bin").write_bytes(b"y" * 2**20)
    assert remove_stale(tmp_path) == [] and folder.exists()
    held.release()
    [removed] = remove_stale(tmp_path)
    assert removed.path == folder and removed.size == 2**20
    assert not folder.exists()
    assert removal_notes([removed]) == (f"removed what killed runs had left: {folder} (1.0 MB)",)


HOLD = """
import sys
from pathlib import Path
from bnstat.leftovers import new_file
path, held = new_file(Path(sys.argv[1]), "out.pt")
print(path, flush=True)
sys.stdin.read()
"""


def test_the_lock_of_another_live_process_is_respected(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as other:  # fmt: skip
        assert other.stdout is not None and other.stdin is not None
        held_by_other = Path(other.stdout.readline().strip())
        assert remove_stale(tmp_path) == [] and held_by_other.exists()
        other.stdin.close()  # the other process ends, and its lock with it
        other.wait(timeout=60)
    assert [item.path for item in remove_stale(tmp_path)] == [held_by_other]


def test_other_files_and_folders_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"keep")
    (tmp_path / f"{SPILL_PREFIX}without-lock").mkdir()  # not ours, or from an older bnstat
    (tmp_path / "other-tool-tmp").mkdir()
    os.symlink(tmp_path / "model.pt", tmp_path / f".link{TEMPORARY_SUFFIX}")
    assert remove_stale(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.pt", f"{SPILL_PREFIX}without-lock", "other-tool-tmp", f".link{TEMPORARY_SUFFIX}"]
    )
    assert removal_notes([]) == ()
