"""Sharded checkpoints as the hub libraries write them: `.bin` and safetensors shards
beside their index, read through it whatever files the command line names.

Every layer is read whole (also one whose tensors the index spreads over two shards) and
counted once, whether the index, one shard, all shards, a pattern or the folder is given,
and a baseline recorded one way is recognised the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from repositories import SPLITS_A_LAYER, healthy_state_dict, split_layers, write_sharded

from bnstat.readers.base import CheckpointFormat
from bnstat.readers.sniff import HEAD_BYTES, Container, sniff
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint

KINDS = ["bin", "safetensors"]
SPLIT = "block2.bn1"


@pytest.fixture(params=KINDS)
def sharded(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The healthy model in shards, one layer split across two of them; the index."""
    index = write_sharded(tmp_path / "repo", healthy_state_dict(), SPLITS_A_LAYER, request.param)
    assert split_layers(index) == {SPLIT}
    return index


def _shards(index: Path) -> list[Path]:
    return sorted(
        index.parent / name for name in set(json.loads(index.read_text())["weight_map"].values())
    )


def _checkpoints(result) -> list[dict]:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["checkpoints"]


def test_the_index_is_recognised_after_long_metadata(sharded):
    assert sharded.read_bytes().index(b'"weight_map"') > HEAD_BYTES
    assert sniff(sharded) is Container.SHARD_INDEX


@pytest.mark.parametrize("kind", KINDS)
def test_every_shard_is_read_by_its_content(tmp_path, kind):
    expected = healthy_state_dict()
    index = write_sharded(tmp_path, expected, SPLITS_A_LAYER, kind)
    with open_checkpoint(index) as raw:
        assert raw.format is {"bin": CheckpointFormat.TORCH_ZIP}.get(
            kind, CheckpointFormat.SAFETENSORS
        )
        (state,) = find_state_dicts(raw)
        assert sorted(state.tensors) == sorted(expected)
        for key, ref in state.tensors.items():
            np.testing.assert_array_equal(ref.read(), expected[key].numpy(), err_msg=key)


def test_a_layer_split_across_shards_is_read_whole(cli, sharded):
    (entry,) = _checkpoints(cli("check", sharded, "--format", "json"))
    layers = {layer["name"]: layer for layer in entry["layers"]}
    assert len(layers) == 7 and entry["findings"] == []
    assert layers[SPLIT]["affine"] and layers[SPLIT]["num_batches_tracked"] == 920


@pytest.mark.parametrize(
    "named", ["index", "one shard", "every shard", "all files", "pattern", "folder"]
)
def test_each_layer_is_counted_once_however_the_files_are_named(cli, sharded, named):
    shards = _shards(sharded)
    arguments = {
        "index": [sharded],
        "one shard": [shards[-1]],
        "every shard": shards,
        "all files": [*shards, sharded, shards[0]],
        "pattern": [f"{sharded.parent}/*-of-*"],
        "folder": [sharded.parent],
    }[named]
    (entry,) = _checkpoints(cli("check", *arguments, "--format", "json"))
    assert Path(entry["path"]).resolve() == sharded.resolve()
    assert len(entry["layers"]) == 7 and entry["layers"][3]["affine"]


def test_a_shard_without_an_index_beside_it_is_read_alone(cli, sharded):
    shard = _shards(sharded)[0]
    sharded.unlink()
    (entry,) = _checkpoints(cli("check", shard, "--format", "json"))
    assert entry["path"] == str(shard) and entry["layers"]


def test_baseline_keys_are_the_same_through_the_index_or_one_shard(cli, sharded, tmp_path):
    state = healthy_state_dict()
    state[f"{SPLIT}.running_var"][0] = -1.0  # BN002, in the split layer
    index = write_sharded(tmp_path / "broken", state, SPLITS_A_LAYER, "safetensors")
    baseline = tmp_path / "baseline.json"
    assert cli("check", index.parent, "--write-baseline", baseline).exit_code == 0
    assert cli("check", _shards(index)[1]).exit_code == 1  # the finding, without the baseline
    for argument in (index.parent, index, *_shards(index)):
        result = cli("check", argument, "--baseline", baseline)
        assert result.exit_code == 0, (argument, result.stdout)
    recorded = tmp_path / "from-a-shard.json"
    cli("check", _shards(index)[0], "--write-baseline", recorded)
    assert recorded.read_text() == baseline.read_text()


def test_an_index_naming_a_missing_shard_is_one_clear_error(cli, sharded):
    _shards(sharded)[0].unlink()
    result = cli("check", sharded)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("bnstat: error: ") and "shard " in line and "no such file" in line


def test_an_index_naming_an_index_is_refused(cli, tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a.weight": index.name}}))
    result = cli("check", index)
    assert result.exit_code == 2
    assert "a shard index that names another index" in result.stderr


def test_a_shard_with_a_code_running_pickle_is_still_an_error(cli, tmp_path):
    """What a shard's pickle refuses belongs to the checkpoint read through the index."""
    state = healthy_state_dict()
    index = write_sharded(tmp_path, state, SPLITS_A_LAYER, "bin")
    shard = _shards(index)[0]
    contents = torch.load(shard, weights_only=True)
    torch.save({**contents, "hook": _Payload()}, shard)
    result = cli("check", index, "--format", "json")
    assert result.exit_code == 1
    (entry,) = json.loads(result.stdout)["checkpoints"]
    assert [f["rule"] for f in entry["findings"]] == ["BN011"]
    assert "system" in entry["findings"][0]["message"]  # posix.system, as os.system pickles


class _Payload:
    """Pickles as a call of `os.system` (never made: bnstat does not run it)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("true",)
