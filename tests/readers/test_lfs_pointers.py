"""Git LFS pointers: what a checkout without `lfs: true` leaves in a checkpoint's place.

The most common first failure on a model repository gets one line that says what the
file is and how to fetch the real one (exit 2, as for any input that cannot be read),
named or found in a folder, alone or as a shard; the rest still runs.
"""

from __future__ import annotations

import json
import shutil

import pytest
from repositories import SPLITS_A_LAYER, healthy_state_dict, lfs_pointer, write_sharded
from zoo import SAMPLES

from bnstat.errors import CheckpointError
from bnstat.readers.sniff import sniff

HINTS = ("a Git LFS pointer", "git lfs pull", "lfs: true")


@pytest.mark.parametrize("name", ["healthy.safetensors", "healthy.pt"])
def test_a_pointer_named_alone_is_one_line_saying_what_to_do(cli, tmp_path, name):
    pointer = tmp_path / name
    pointer.write_bytes(lfs_pointer(SAMPLES / name))
    result = cli("check", pointer)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    size = f"{(SAMPLES / name).stat().st_size:,} bytes"
    assert line.startswith(f"bnstat: error: {pointer}: ")
    assert all(hint in line for hint in (*HINTS, size)), line
    assert "first bytes" not in line


def test_a_pointer_in_a_folder_is_reported_and_the_rest_still_runs(cli, tmp_path):
    shutil.copy(SAMPLES / "healthy.safetensors", tmp_path / "healthy.safetensors")
    (tmp_path / "ema.safetensors").write_bytes(lfs_pointer(SAMPLES / "healthy.safetensors"))
    result = cli("check", tmp_path, "--format", "json")
    assert result.exit_code == 2
    errors = {c["path"]: c["error"] for c in json.loads(result.stdout)["checkpoints"]}
    assert errors[str(tmp_path / "healthy.safetensors")] is None
    assert all(hint in errors[str(tmp_path / "ema.safetensors")] for hint in HINTS)


def test_a_pointer_in_place_of_a_shard_names_the_shard(cli, tmp_path):
    index = write_sharded(tmp_path, healthy_state_dict(), SPLITS_A_LAYER, "safetensors")
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(lfs_pointer(shard))
    result = cli("check", index)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert f"shard {shard.name}: a Git LFS pointer" in line


def test_text_that_only_starts_like_a_pointer_is_not_one(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("version 2 of the weights, see README\n")
    with pytest.raises(CheckpointError, match="not a checkpoint format bnstat reads"):
        sniff(path)
