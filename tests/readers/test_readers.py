"""Every reader returns exactly the tensors torch itself loads from the same file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bnstat.readers.base import CheckpointFormat
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.tensor_ref import TensorRef


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy()


def assert_same_tensors(path: Path, expected: dict[str, torch.Tensor]) -> None:
    with open_checkpoint(path) as checkpoint:
        (state,) = [s for s in find_state_dicts(checkpoint) if s.tensors]
        assert sorted(state.tensors) == sorted(expected)
        for key, ref in state.tensors.items():
            got, want = ref.read(), as_numpy(expected[key])
            assert got.shape == want.shape, key
            np.testing.assert_array_equal(got, want, err_msg=key)


def test_torch_zip_matches_torch_load(state_dict, write_pt):
    path = write_pt(state_dict)
    assert_same_tensors(path, torch.load(path, weights_only=True))


def test_legacy_pickle_matches_torch_load(state_dict, write_pt):
    path = write_pt(state_dict, legacy=True)
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.format is CheckpointFormat.TORCH_LEGACY
    assert_same_tensors(path, torch.load(path, weights_only=True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_safetensors_dtypes_match_torch(state_dict, write_st, dtype):
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    path = write_st(cast)
    assert_same_tensors(path, cast)


def test_views_offsets_and_strides_are_read_like_torch(write_pt):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    views = {
        "sliced": base[2:4],  # storage offset
        "strided": base[:, ::3],  # non-unit stride
        "transposed": base.t(),  # permuted strides
        "scalar": base[1, 7],
        "empty": base[:0],
    }
    path = write_pt(views)
    assert_same_tensors(path, torch.load(path, weights_only=True))


def test_big_endian_archive(state_dict, write_pt, tmp_path):
    """An archive written on a big-endian machine: byteorder member says 'big'."""
    source = write_pt(state_dict)
    target = tmp_path / "big.pt"
    itemsizes = _storage_itemsizes(state_dict)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            leaf = info.filename.split("/", 1)[1]
            if leaf == "byteorder":
                data = b"big"
            elif leaf.startswith("data/"):
                size = itemsizes[leaf.split("/")[1]]
                data = np.frombuffer(data, dtype=f"<u{size}").astype(f">u{size}").tobytes()
            zout.writestr(info.filename, data)
    assert_same_tensors(target, state_dict)


def _storage_itemsizes(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Storage key -> element size, in the order torch.save numbers storages."""
    sizes: dict[str, int] = {}
    for tensor in state_dict.values():
        sizes.setdefault(str(len(sizes)), tensor.element_size())
    return sizes


def test_sharded_safetensors_reads_every_shard(state_dict, write_st, tmp_path):
    keys = sorted(state_dict)
    half = len(keys) // 2
    shards = {"a.safetensors": keys[:half], "b.safetensors": keys[half:]}
    for name, names in shards.items():
        write_st({k: state_dict[k] for k in names}, name=name)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(
        '{"metadata": {}, "weight_map": {'
        + ", ".join(f'"{k}": "{n}"' for n, ks in shards.items() for k in ks)
        + "}}"
    )
    assert_same_tensors(index, state_dict)


def test_torchscript_archive_is_read_without_torch_jit(model, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.format is CheckpointFormat.TORCHSCRIPT
    expected = torch.jit.load(str(path)).state_dict()
    assert_same_tensors(path, dict(expected))


def test_tensors_are_lazy(write_st, tmp_path):
    """Only the tensors asked for are read: a corrupted unrelated tensor goes unnoticed."""
    path = write_st({"big": torch.zeros(1000), "small": torch.ones(3)})
    with open_checkpoint(path) as checkpoint:
        assert isinstance(checkpoint.root["small"], TensorRef)
        np.testing.assert_array_equal(checkpoint.root["small"].read(), np.ones(3, np.float32))


def test_compressed_zip_members_are_inflated(state_dict, write_pt, tmp_path):
    source = write_pt(state_dict)
    target = tmp_path / "deflated.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    assert_same_tensors(target, state_dict)


def test_bytes_objects_in_pickles_are_rebuilt(write_pt):
    """Protocol 2 pickles bytes through _codecs.encode, which is allowed for latin-1 only."""
    path = write_pt({"blob": b"\x00\xffabc", "w": torch.ones(2)})
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.root["blob"] == b"\x00\xffabc"
        assert checkpoint.refused_globals == ()
